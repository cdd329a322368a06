"""SE image tools: the pvimg-like image builder and inspector, and the emulated host-key PKI."""
