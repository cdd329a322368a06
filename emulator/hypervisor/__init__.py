"""The KVM-like hypervisor (untrusted): VMs, SIE, the secure-guest lifecycle and the Ultravisor client.

Import the modules directly (``emulator.hypervisor.uvclient``, ...); this file stays import-free.
"""
