"""Symbols of guest programs: ELF symbol tables, System.map files, a Linux kernel's own kallsyms."""
