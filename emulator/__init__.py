"""zuv: an emulated IBM Z machine with an Ultravisor that runs Secure Execution guests."""
