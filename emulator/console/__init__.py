"""The zuv monitor console: a debugger for the machine, its Ultravisor and Secure Execution guests.

Python use: ``open_session(path)`` (``emulator.console.cli``) gives a ``Session``; ``execute(session, line)``
(``emulator.console.commands``) runs any console command and returns its ``Output``.
"""
