"""unicorn's walk of its exit tree after every run, cut short: a sentinel node first in the tree, and the
thread out of it cut.

After each ``emu_start`` unicorn calls its TB-invalidation slot for every registered exit
(``resume_all_vcpus``: ``g_tree_foreach`` over ``uc_struct.ctl_exits``). With the slot switched
(``engine.Switch``) each call does nothing, yet the walk stays: ~2-3 ns a node, ~136 nodes in
kvm-unit-tests' ``sclp`` (five code pages' scanner hits), seven runs per SCLP call: ~3 us of its ~43 us.

The tree is glib's threaded AVL tree (unicorn's ``glib_compat/gtree.c``): a node without a right child keeps
in its right pointer the next node in key order, and only the in-order walks (``g_tree_foreach``, and
``g_tree_remove_all`` when the list is set whole or the engine closes) follow those threads. Lookups (the
translator's ``uc_addr_is_exit``), insertions, removals and rotations follow child links only; an insertion
copies a thread into the new node without following it. So the sentinel, the smallest key (address 0) with
the value 2, is the walk's first node: ``uc_addr_is_exit`` wants the value 1, so address 0 is no exit, and the
walk's callback skips address 0. The thread that leaves the sentinel's subtree (the sentinel's own, or that of
the one node AVL balance lets hang right of it) is set to NULL: the walk ends after at most two nodes, while
translation still finds every exit. The thread is mended before every change of the tree (``ExitList``: an
insertion could copy the NULL into another node, ``g_tree_remove_all`` would stop at it) and cut again after.

The node layout (key, value, left, right, balance, left-child and right-child flags) is checked by
``engine``'s self-test on a scratch engine (the walk stops; lookups still halt at every exit and not at
address 0; mended, the walk sees every exit); without it the walk stays whole.
"""

from __future__ import annotations

import ctypes
from typing import Final

#: GTreeNode's fields (64-bit hosts): key, value, left, right pointers, then int8 balance and two flags
_KEY, _LEFT, _RIGHT, _LEFT_CHILD, _RIGHT_CHILD = 0x00, 0x10, 0x18, 0x21, 0x22
#: the sentinel's value: not 1, so ``uc_addr_is_exit`` takes its key for no exit
SENTINEL_VALUE: Final = 2

_U64 = ctypes.c_uint64
_U8 = ctypes.c_uint8


class WalkStop:
    """The sentinel's key and the cut of one engine's exit tree (the ``GTree`` at ``tree``)."""

    __slots__ = ("_tree", "_key", "_cut")

    def __init__(self, tree: int) -> None:
        self._tree = tree
        self._key = _U64(0)  # the sentinel's key: address 0, for good (the tree frees no key)
        #: (node, the thread its right pointer held) while the walk is cut, else None
        self._cut: tuple[int, int] | None = None

    @property
    def key(self) -> int:
        """The address of the sentinel's key (what the tree keeps)."""
        return ctypes.addressof(self._key)

    def mend(self) -> None:
        """Put the cut thread back (before the tree changes, or goes)."""
        cut = self._cut
        if cut is not None:
            _U64.from_address(cut[0] + _RIGHT).value = cut[1]
            self._cut = None

    def cut(self) -> None:
        """Cut the thread out of the sentinel's subtree (after the tree changed): the walk ends there."""
        node = _U64.from_address(self._tree).value  # the root
        if not node:
            return
        while _U8.from_address(node + _LEFT_CHILD).value:
            node = _U64.from_address(node + _LEFT).value
        if _U64.from_address(_U64.from_address(node + _KEY).value).value != 0:
            return  # the first node is not the sentinel (not in the tree): the walk stays whole
        while _U8.from_address(node + _RIGHT_CHILD).value:  # (AVL: at most one node right of the sentinel)
            node = _U64.from_address(node + _RIGHT).value
        thread = _U64.from_address(node + _RIGHT).value
        if thread:  # (NULL: the last node of the tree, where the walk ends anyway)
            _U64.from_address(node + _RIGHT).value = 0
            self._cut = (node, thread)
