"""The machine API: build a machine, load a program, run it, read the result."""
