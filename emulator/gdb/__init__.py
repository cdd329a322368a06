"""The GDB remote-protocol stub: gdb-multiarch attaches to a zuv machine (QEMU's ``-s``, ``-S``, ``-gdb``)."""
