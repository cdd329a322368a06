"""The KVM-like hypervisor (untrusted): VMs, the secure-guest lifecycle and the Ultravisor client.

The SIE it issues is performed below it: ``emulator.hw.sie`` (the machine), ``firmware.uv_sie`` (the
Ultravisor's half for secure guests); the debug capability over secure guests is the machine's
(``emulator.machine.secure_debug``).

Import the modules directly (``emulator.hypervisor.uvclient``, ...); this file stays import-free.
"""
