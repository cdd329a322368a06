"""The trusted firmware: the Ultravisor model, SE header crypto and machine identities."""
