"""Emulated IBM Z hardware: physical memory, CPUs (unicorn), DAT, interrupts and machine-level devices."""
