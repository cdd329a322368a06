"""The attacks of a malicious hypervisor on a booted secure guest, each written against ``emulator.api`` only.

Every attack boots the bundled demo guest (``guests/images/secure_demo.se``) on its own host, stops it
where it announces its secret page, does what a hostile hypervisor can do, lets the guest go on, and
records what it tried, what the machine did (PGM code, UV rc/rrc) and why the guest stayed safe. The
referee (``emulator.attacks.referee``) counts the secret's bytes in everything the host obtained.
"""

from __future__ import annotations

import base64
import json
import re
import tempfile
from pathlib import Path

from emulator.api import (
    DEMO_IMAGE,
    DEVICE_BLOCK,
    DEVICE_CONSOLE,
    Exit,
    Host,
    RelyingParty,
    SecureStorageAccess,
)
from emulator.attacks import referee
from emulator.attacks.harness import INTACT, Attack, Outcome, finish, read_as_host, start

__all__ = ["ATTACKS"]

# -- storage ---------------------------------------------------------------------------------------------


def read_secret(seed: int = 1) -> Outcome:
    o, host, g = start("read-secret", seed)
    s = g.secret_page
    o.tried(f"read guest page {s:#x} (host frame {g.frame(s):#x}) through the host's view")
    read_as_host(o, g, s)
    try:
        o.got(host.read(g.frame(s), 4096))
    except SecureStorageAccess as e:
        o.machine(f"the same frame by host absolute address: PGM {e.code:#04x}")
    o.why("the frame's owner tag is the secure configuration's: every host access is refused before it "
          "touches storage (emulator/hw/access.py)")
    return finish(o, host, g)


def write_secret(seed: int = 1) -> Outcome:
    o, host, g = start("write-secret", seed)
    s = g.secret_page
    o.tried(f"overwrite guest page {s:#x} with 'host was here'")
    a = g.try_write(s, b"host was here" * 8)
    o.machine(str(a))
    if a.ok:
        o.fail("the host wrote into a secure page")
    else:
        o.facts["pgm"] = a.code
    o.why("a store is decided like a fetch: PGM 0x3D, nothing stored; the guest's digest still matches")
    return finish(o, host, g)


def export_read(seed: int = 1) -> Outcome:
    o, host, g = start("export-read", seed)
    s = g.secret_page
    o.tried("force the page out with Convert from Secure Storage, then read it")
    r = g.export(s)
    o.machine(f"export: {r}")
    o.facts["rc"] = r.rc
    read_as_host(o, g, s)
    o.why("the Ultravisor encrypts the page in place (AES-XTS, sealed with its guest address and a counter) "
          "before the host may touch it; the guest's next access imports it back, checked")
    return finish(o, host, g)


def dma_read(seed: int = 1) -> Outcome:
    o, host, g = start("dma-read", seed)
    s = g.secret_page
    m = re.search(rb"console: virtio-like queue at (0x[0-9a-f]+)", g.console)  # the guest says where
    assert m is not None
    cons_q = int(m.group(1), 16)
    done: list[Exit] = []

    def at_exit(e: Exit) -> None:  # the guest's next console notification (DIAGNOSE 0x500)
        if done or e.icptcode != 0x68 or e.ipa != 0x8302:
            return
        sd = g.state_description()
        if sd.pv_grregs[2] != DEVICE_CONSOLE:
            return
        q = g.queue(cons_q)
        q.desc[q.avail[(q.avail_idx - 1) % q.num]].addr = s
        g.write_queue(cons_q, q)
        done.append(e)

    off = g.on_exit(at_exit)
    o.tried(f"at the guest's console notification, point its descriptor in the shared queue {cons_q:#x} at "
            f"the secret page {s:#x}, so the console device prints it")
    r = g.run(time_limit=20)
    off()
    o.machine(f"the queue was rewritten at {len(done)} notification(s); the device's read of {s:#x} took "
              f"PGM 0x3d {len(g.host_traps)} time(s) and the hypervisor exported the page")
    o.facts["traps"] = len(g.host_traps)
    o.got(g.console)
    o.why("a device reaches guest storage only through the host view: the secure page traps, and the only "
          "way on is an export, which hands the device ciphertext; the guest's next touch imports it")
    # main() returned 0 (EXIT: STATUS=1): the digest still matched; the line may follow the ciphertext
    if r.clean and g.console.rstrip().endswith(b"EXIT: STATUS=1"):
        o.machine("the console printed ciphertext in place of the guest's last line; the guest ended with "
                  "exit status 0 (its secret's digest matched)")
    else:
        o.fail(f"the guest did not confirm its secret ({r.detail or r.reason})")
    g.destroy()
    host.close()
    return o


def dma_write(seed: int = 1) -> Outcome:
    o, host, g = start("dma-write", seed)
    s = g.secret_page
    queues = [a for a in g.pages("shared") if bytes(g.queue(a))[:4] == b"ZVQ1"]
    blk_q = next(a for a in queues if g.queue(a).desc[2].len == 1)  # the block queue: 3-descriptor chains
    q = g.queue(blk_q)
    buf = q.desc[0].addr & ~0xFFF
    g.write(buf, bytes(16))  # header: type 0 (read from the disk into guest storage), sector 0
    q.desc[0].addr, q.desc[0].len, q.desc[0].flags, q.desc[0].next = buf, 16, 1, 1
    q.desc[1].addr, q.desc[1].len, q.desc[1].flags, q.desc[1].next = s, 512, 3, 2
    q.desc[2].addr, q.desc[2].len, q.desc[2].flags, q.desc[2].next = buf + 1024, 1, 2, 0
    q.avail[q.avail_idx % q.num] = 0
    q.avail_idx += 1
    g.write_queue(blk_q, q)
    o.tried(f"forge a block request in the shared queue {blk_q:#x} whose data buffer is the secret page "
            f"{s:#x}, and run the disk model on it (a DMA of sector 0 into secure storage)")
    rc = g.notify(DEVICE_BLOCK, blk_q)
    o.machine(f"notify: {rc}; the device's store took PGM 0x3d {len(g.host_traps)} time(s); the hypervisor "
              "exported the page and the device overwrote its ciphertext")
    o.why("the Ultravisor checks an exported page's integrity on import: the overwritten ciphertext fails "
          "(rc 0x0107) and the page can never become secure with the host's bytes")
    log0 = len(host.uv_log())
    finish(o, host, g, "stopped")
    imports = [e for e in host.uv_log(log0) if e.code == 0x0200 and e.rc != 1]
    if imports:
        o.machine(f"import: rc {imports[0].rc:#06x}")
        o.facts["rc"] = imports[0].rc
    return o


def swap_pages(seed: int = 1) -> Outcome:
    o, host, g = start("swap-pages", seed)
    s = g.secret_page
    other = next(a for a in g.pages("secure") if a not in (s, 0, 0x1000) and a > s)
    o.tried(f"export the secret page {s:#x} and page {other:#x}, swap their ciphertexts, import both")
    for a in (s, other):
        o.machine(f"export {a:#x}: {g.export(a)}")
    ca, cb = g.read(s, 4096), g.read(other, 4096)
    o.got(ca + cb)
    g.write(s, cb)
    g.write(other, ca)
    rcs = []
    for a in (s, other):
        r = g.import_page(a)
        rcs.append(r.rc)
        o.machine(f"import {a:#x}: {r}")
    o.facts["rc"] = rcs
    if any(rc == 1 for rc in rcs):
        o.fail("a swapped page was accepted")
    o.why("each export is sealed with its guest address: a page's ciphertext does not open at another "
          "address")
    return finish(o, host, g, "stopped")


def replay_export(seed: int = 1) -> Outcome:
    o, host, g = start("replay-export", seed)
    s = g.secret_page
    o.tried(f"keep an exported copy of {s:#x}, let it be imported and exported again, then hand back the "
            "old copy")
    g.export(s)
    old = g.read(s, 4096)
    o.machine(f"import (genuine): {g.import_page(s)}")
    o.machine(f"export again: {g.export(s)}")
    latest = g.read(s, 4096)
    o.got(old + latest)
    g.write(s, old)
    r = g.import_page(s)
    o.machine(f"import of the old copy: {r}")
    o.facts["rc"] = r.rc
    if r.ok:
        o.fail("the replayed page was accepted")
    g.write(s, latest)
    r2 = g.import_page(s)
    o.machine(f"import of the latest copy: {r2}")
    o.why("each export carries a counter the Ultravisor keeps: only the newest copy opens")
    return finish(o, host, g)


def remap_page(seed: int = 1) -> Outcome:
    o, host, g = start("remap-page", seed)
    s = g.secret_page
    evil = host.alloc_page()
    host.write(evil, b"EVIL" * 1024)
    old = g.remap(s, evil)
    o.tried(f"point guest page {s:#x} at a host frame {evil:#x} holding the host's data (was {old:#x})")
    read_as_host(o, g, s)  # the host reads its own frame now: its own bytes
    try:
        o.got(host.read(old, 4096))
    except SecureStorageAccess as e:
        o.machine(f"the old frame {old:#x}: PGM {e.code:#04x}")
    log0 = len(host.uv_log())
    o.why("the Ultravisor records which frame holds which guest page: a page mapped elsewhere is not "
          "secure (0x3E), and the frame it names cannot be imported in its place")
    finish(o, host, g, "stopped")
    bad = [e for e in host.uv_log(log0) if e.code == 0x0200 and e.rc != 1]
    if bad:
        o.facts["rc"] = bad[0].rc
    return o


def transplant_page(seed: int = 1) -> Outcome:
    o = Outcome("transplant-page")
    host = Host(seed=seed)
    a = host.boot()
    b = host.boot()  # a second instance of the same image: the same secret at the same address
    s = a.secret_page
    o.tried(f"boot the image twice, export page {s:#x} of both, put the first guest's ciphertext in the "
            "second guest's frame, import it there")
    o.machine(f"export (guest 1): {a.export(s)}")
    ct = a.read(s, 4096)
    o.machine(f"export (guest 2): {b.export(s)}")
    o.got(ct + b.read(s, 4096))
    b.write(s, ct)
    r = b.import_page(s)
    o.machine(f"import into guest 2: {r}")
    o.facts["rc"] = r.rc
    if r.ok:
        o.fail("another configuration's page was accepted")
    o.why("each configuration seals its exports under its own keys: a page of one instance does not open in "
          "another, even of the same image at the same address")
    r2 = a.import_page(s)
    o.machine(f"guest 1's page goes back where it belongs: {r2}")
    b.destroy()
    return finish(o, host, a)


def alias_page(seed: int = 1) -> Outcome:
    o, host, g = start("alias-page", seed)
    s = g.secret_page
    bounce = next(a for a in g.pages("shared") if a != s)
    o.tried(f"map the shared page {bounce:#x} (which the host may read) onto the secret page's frame "
            f"{g.frame(s):#x}, read it, and import it as the guest's page {bounce:#x}")
    g.remap(bounce, g.frame(s))
    read_as_host(o, g, bounce)
    r = g.import_page(bounce)
    o.machine(f"import of {bounce:#x} on that frame: {r}")
    o.facts["rc"] = r.rc
    if r.ok:
        o.fail("one frame became two guest pages")
    o.why("sharing is a property of the frame, not of the mapping: the secret's frame stays secure "
          "whatever maps it, and the Ultravisor records the one guest address each secure frame holds")
    return finish(o, host, g)


def discard_page(seed: int = 1) -> Outcome:
    o, host, g = start("discard-page", seed)
    s = g.secret_page
    o.tried(f"Destroy Secure Storage of the secret page {s:#x} while the guest runs, read the frame, fill "
            "it with the host's data")
    r = g.destroy_page(s)
    o.machine(f"destroy: {r}")
    a = g.try_read(s, 4096)
    o.got(a.data)
    o.machine(f"the frame reads {'all zeros' if a.ok and not any(a.data) else a}")
    g.write(s, b"EVIL" * 1024)
    o.why("the Ultravisor clears the page before the host may touch it, and a page imported without an "
          "export record is a fresh cleared page: the host can discard guest memory (availability) but "
          "neither read it nor plant its own bytes")
    finish(o, host, g, "zeroed")
    if b"EVIL" in g.console:
        o.fail("the host's bytes reached the guest")
    return o


def share_secret(seed: int = 1) -> Outcome:
    o, host, g = start("share-secret", seed)
    s = g.secret_page
    o.tried(f"open the secret page {s:#x} to the host: Set Shared Access (a guest call) and Pin Page Shared")
    r1 = g.uvc("set_shared_access", paddr=s)
    o.machine(f"Set Shared Access from the host: {r1}")
    r2 = g.uvc("pin_page_shared", paddr=g.frame(s))
    o.machine(f"Pin Page Shared: {r2}")
    o.facts["rc"] = [r1.rc, r2.rc]
    if r1.ok or r2.ok:
        o.fail("the host shared a secure page")
    read_as_host(o, g, s)
    o.why("only the guest may share its pages; Pin Page Shared keeps a page shared only if it already is")
    return finish(o, host, g)


# -- registers, reset, dump -------------------------------------------------------------------------------


def register_theft(seed: int = 1) -> Outcome:
    o, host, g = start("register-theft", seed)
    seen: list[tuple[int, int]] = []
    bad: list[str] = []

    def at_exit(e: Exit) -> None:
        if not e.icptcode:
            return
        sd = g.state_description()
        blob = sd.raw + g.sida()
        passed = set(sd.pv_grregs) | set(sd.psw)  # what the interception hands the host by architecture
        regs = referee.secure_registers(g)
        for i, val in enumerate(regs):
            if val > 0xFFFF and val not in passed and val.to_bytes(8, "big") in blob:
                bad.append(f"GR{i}={val:#x} at {e.name}")
        seen.append((e.icptcode, e.ipa))

    off = g.on_exit(at_exit)
    o.tried("after every interception, read the whole SIE page (state description, pv_grregs) and the SIDA, "
            "and look for the secure CPU's registers")
    r = g.run(time_limit=20)
    off()
    o.machine(f"{len(seen)} interceptions; the SD and SIDA held "
              f"{len(bad)} register values the intercepted instruction does not pass")
    o.facts["interceptions"] = len(seen)
    o.facts["leaked_registers"] = bad
    if bad:
        o.fail("secure registers in the state description: " + ", ".join(bad[:4]))
    o.why("format-4 SIE keeps the registers in the Ultravisor's storage; the host gets only the operands "
          "of the intercepted instruction in pv_grregs and its data in the SIDA")
    if not (INTACT in g.console and r.clean):
        o.fail("the guest did not finish")
    g.destroy()
    host.close()
    return o


def read_donated(seed: int = 1) -> Outcome:
    o, host, g = start("read-donated", seed)
    regions = g.donated_storage()
    o.tried("read and write the storage the host donated to the Ultravisor (configuration base and "
            "variable storage, the secure CPU's storage), then read it again after the configuration is gone")
    refused = 0
    for what, addr, length in regions:
        n = min(length, 0x4000)
        try:
            o.got(host.read(addr, n))
            o.machine(f"{what} at {addr:#x}: read {n} bytes")
        except SecureStorageAccess as e:
            refused += 1
            o.machine(f"{what} at {addr:#x}+{length:#x}: PGM {e.code:#04x}")
        try:
            host.write(addr, b"host")
            o.fail(f"the host wrote into {what}")
        except SecureStorageAccess:
            pass
    o.facts["refused"] = refused
    o.facts["regions"] = len(regions)
    if refused != len(regions):
        o.fail("donated storage was readable while the configuration lived")
    regs = referee.secure_registers(g)
    r = g.run(time_limit=20)
    o.machine(f"the guest ran on: {'secret intact: yes' if INTACT in g.console and r.clean else r.reason}")
    g.destroy()
    after = b"".join(host.read(addr, length) for _, addr, length in regions)
    o.got(after)
    left = [i for i, v in enumerate(regs) if v > 0xFFFF and v.to_bytes(8, "big") in after]
    o.facts["registers_after"] = left
    o.machine(f"after the configuration was destroyed the {len(after)} bytes read back hold "
              f"{len(left)} of its register values and {referee.secret_bytes(after)} secret bytes")
    if left:
        o.fail(f"registers left in freed donated storage: {left}")
    o.why("donated frames belong to the Ultravisor (owner tag): the host is refused like on a secure page, "
          "and they come back only when the configuration or CPU is destroyed")
    host.close()
    return o


def sd_swap(seed: int = 1) -> Outcome:
    from emulator.hw.sie import SieBlock

    o = Outcome("sd-swap")
    host = Host(seed=seed)
    a = host.boot()
    b = host.boot()
    o.tried("enter guest 2's SIE page with guest 1's secure CPU handle")
    b.write_state_description(a.cpu_handles[0].to_bytes(8, "big"), SieBlock.pv_handle_cpu.offset)
    ex, n = b.step(count=1000)
    vir = b.state_description().ipb >> 16
    o.machine(f"{ex.name} {vir:#06x} after {n} instructions ({b.cpu_detail})")
    o.facts["validity"] = vir if ex.icptcode == 0x20 else None
    if ex.icptcode != 0x20:
        o.fail("a foreign CPU handle was accepted")
    b.destroy()
    b = host.boot()
    o.tried("copy guest 1's whole state description (both handles, timers) into guest 2's SIE page and "
            "enter it, hoping for guest 1's registers in guest 2's page")
    regs = referee.secure_registers(a)
    b.write_state_description(a.state_description().raw[:0x200])
    ex, n = b.step(count=1000)
    sd = b.state_description()
    blob = sd.raw + b.sida()
    passed = set(sd.pv_grregs) | set(sd.psw)
    seen = [i for i, v in enumerate(regs) if v > 0xFFFF and v not in passed and v.to_bytes(8, "big") in blob]
    o.machine(f"{ex.name} after {n} instructions; the page and SIDA hold {len(seen)} other registers")
    o.facts["registers"] = seen
    o.facts["foreign_sd_entered"] = ex.icptcode != 0x20
    o.facts["copy_validity"] = sd.ipb >> 16 if ex.icptcode == 0x20 else None
    if ex.icptcode != 0x20:
        o.fail("guest 1's secure CPU ran from guest 2's SIE page")
    o.got(blob)
    if seen:
        o.fail(f"secure registers in the SD: {seen}")
    o.why(
        "handles must name a secure CPU of the named configuration (validity 0x2002), and a secure CPU runs "
        "only from the state description given at Create Secure CPU (validity 0x200b): a whole copy of it "
        "in another page runs nothing"
    )
    b.destroy()
    a.destroy()
    host.close()
    return o


def reset_restart(seed: int = 1) -> Outcome:
    o, host, g = start("reset-restart", seed)
    s = g.secret_page
    o.tried("stop and clear-reset the secure CPU, then restart the configuration without Prepare Reset")
    o.machine(f"stop: {g.set_cpu_state('stopped')}")
    o.machine(f"clear reset: {g.cpu_reset('clear')}")
    r = g.set_cpu_state("load")
    o.machine(f"Set CPU State operating-load: {r}")
    o.facts["rc"] = r.rc
    if r.ok:
        o.fail("the configuration restarted without Prepare Reset")
    read_as_host(o, g, s)
    o.why("a restart needs Prepare Reset, which empties the secret store; a reset leaves memory secure")
    g.destroy()
    host.close()
    return o


def dump_without_key(seed: int = 1) -> Outcome:
    o, host, g = start("dump-without-key", seed)
    o.tried("dump the configuration and its CPU (Initiate Configuration Dump, Dump CPU State)")
    r = g.uvc("dump_init", handle=g.handle)
    o.machine(f"Initiate Configuration Dump: {r}")
    area = host.alloc_page()
    r2 = g.uvc("dump_cpu", cpu_handle=g.cpu_handles[0], dump_area_origin=area)
    o.machine(f"Dump CPU State: {r2}")
    o.got(host.read(area, 4096))
    o.facts["rc"] = [r.rc, r2.rc]
    if r.ok or r2.ok:
        o.fail("a dump was started for an image that does not allow it")
    o.why("the SE header's flags decide whether a guest may be dumped, and a dump is encrypted for the "
          "owner's customer communication key, never for the host")
    return finish(o, host, g)


def dump_ciphertext(seed: int = 1) -> Outcome:
    from emulator.hypervisor.boot import DEMO_KERNEL
    from emulator.image.pvimg import build_image
    from firmware.crypto import DeterministicRng, Secret
    from firmware.machine_identity import MachineIdentity
    from firmware.se_header import PCF_ALLOW_DUMPING, PCF_DEFAULT

    o = Outcome("dump-ciphertext")
    rng = DeterministicRng("zuv attack playbook: a dumpable demo image")
    cck = Secret(rng.random_bytes(32), "CCK")  # the image owner's customer communication key
    key = MachineIdentity.bundled("zuv-demo").public_key
    image = build_image(kernel=DEMO_KERNEL.read_bytes(), host_keys=[key], rng=rng,
                        pcf=PCF_DEFAULT | PCF_ALLOW_DUMPING, cck=cck).data  # fmt: skip
    with tempfile.TemporaryDirectory() as d, Host(seed=seed) as host:
        path = Path(d) / "dumpable.se"
        path.write_bytes(image)
        g = host.boot(path)
        if not g.secure:
            o.fail(f"the dumpable image did not boot: {g.secure_boot_failure}")
            return o
        o.tried("the owner allowed dumps (SE header flag): dump the whole guest as the host - Initiate "
                "Configuration Dump, Dump Configuration Storage State, Dump CPU State, every secure page "
                "exported, Complete Configuration Dump")
        regs = referee.secure_registers(g)
        area = [host.alloc_page() for _ in range(2)]
        rs = [g.uvc("dump_init", handle=g.handle)]
        dump = b""
        for mb in range(0, g.memory_size, 1 << 20):
            rs.append(g.uvc("dump_conf_stor_state", config_handle=g.handle, dump_area_origin=area[0],
                            gaddr=mb))  # fmt: skip
            dump += host.read(area[0], 4096)
            if not rs[-1].ok:
                break
        rs.append(g.uvc("dump_cpu", cpu_handle=g.cpu_handles[0], dump_area_origin=area[0]))
        cpu_state = host.read(area[0], 4096)
        pages = g.pages("secure")
        for a in pages:
            g.export(a)
            dump += g.read(a, 4096)
        rs.append(g.uvc("dump_complete", config_handle=g.handle, dump_area_origin=area[1]))
        completion = host.read(area[1], 4096)
        dump += cpu_state + completion
        for r in (rs[0], rs[1], rs[-2], rs[-1]):
            o.machine(str(r))
        o.machine(f"{len(pages)} secure pages exported and read: {len(dump)} bytes of dump in the host's "
                  "hands")
        o.facts["rc"] = sorted({r.rc for r in rs})
        if not all(r.ok for r in rs):
            o.fail("the dump did not complete")
        o.got(dump)
        seen = [i for i, v in enumerate(regs) if v > 0xFFFF and v.to_bytes(8, "big") in cpu_state]
        o.facts["registers_in_dump"] = seen
        if seen:
            o.fail(f"registers in the clear in the CPU dump: {seen}")
        o.machine("no register of the secure CPU appears in the CPU state the host stored")
        from firmware.crypto import CryptoError
        from firmware.uv_dump import open_completion

        tries = (("the host, guessing a key", Secret(bytes(32), "guess")), ("the owner, with the CCK", cck))
        for who, k in tries:
            try:
                open_completion(k, completion)
                o.machine(f"{who}: the completion data opens (the dump is genuine)")
                o.facts.setdefault("opened_by", []).append(who)
            except CryptoError:
                o.machine(f"{who}: the completion data does not authenticate")
        o.why("a dump is encrypted for the image owner: the CPU state and the completion data are sealed "
              "with a key derived from the customer communication key in the SE header, the pages are "
              "ordinary exports; the host holds a complete dump it cannot open")
        g.destroy()
    return o


# -- the image --------------------------------------------------------------------------------------------


def _tampered_boot(o: Outcome, offset: int, what: str, seed: int) -> None:
    data = bytearray(DEMO_IMAGE.read_bytes())
    data[offset] ^= 0x01
    o.tried(f"flip one bit of the image at {offset:#x} ({what}) and boot it")
    with tempfile.TemporaryDirectory() as d, Host(seed=seed) as host:
        path = Path(d) / "tampered.se"
        path.write_bytes(bytes(data))
        g = host.boot(path, until=None, time_limit=20)
        ipl = (0x0300, 0x0301, 0x0302)  # Set Secure Configuration Parameters, Unpack, Verify
        bad = [e for e in host.uv_log() if e.rc != 1 and e.caller == "host" and e.code in ipl]
        o.machine(f"secure IPL: {g.secure_boot_failure or 'succeeded'}")
        if bad:
            o.facts["rc"] = bad[0].rc
            o.facts["uvc"] = bad[0].name
        if g.secure or not bad:
            o.fail("the tampered image ran as a secure guest")
        o.got(g.console)


def header_tamper(seed: int = 1) -> Outcome:
    from emulator.image.pvimg import parse_image

    o = Outcome("header-tamper")
    im = parse_image(DEMO_IMAGE.read_bytes())
    _tampered_boot(o, im.header_addr + im.header_size - 0x20, "the SE header's encrypted part", seed)
    o.why("the header is authenticated (AES-GCM under a key only the machine's host key opens): Set Secure "
          "Configuration Parameters refuses it and the guest never becomes secure")
    return o


def image_tamper(seed: int = 1) -> Outcome:
    from emulator.image.pvimg import parse_image

    o = Outcome("image-tamper")
    im = parse_image(DEMO_IMAGE.read_bytes())
    comp = im.ipib.components[0]
    _tampered_boot(o, comp.addr + 0x800, "the encrypted kernel", seed)
    o.why("Unpack hashes every encrypted page into the page-list digest; Verify compares it with the "
          "header's, so a changed page stops the secure IPL")
    return o


# -- attestation and secrets ------------------------------------------------------------------------------


def attest_replay(seed: int = 1) -> Outcome:
    o = Outcome("attest-replay")
    with RelyingParty() as rp:
        first = rp.boot()
        o.tried("record the guest's attestation response, then send it again for a second boot")
        again = rp.boot("replay", replay=first.sent)
        stale = rp.boot("stale-nonce")
    o.machine(f"first boot: key released {first.unlocked}")
    o.machine(f"replay: refused ({again.refused_field}: {again.refused_reason})")
    o.machine(f"stale challenge: refused ({stale.refused_field}: {stale.refused_reason})")
    o.facts["refused"] = [again.refused_field, stale.refused_field]
    if not first.unlocked or again.unlocked or stale.unlocked:
        o.fail("a replayed or stale answer released the key")
    for x in (first, again, stale):
        o.got(json.dumps(x.answer or {}).encode() + json.dumps(x.sent or {}).encode())
    o.why("a challenge is valid once and the measurement binds its nonce; the Ultravisor measured the "
          "nonce it decrypted, which the host cannot change")
    return o


def secret_theft(seed: int = 1) -> Outcome:
    from emulator.attest.demo import demo_disk_key

    o, host, g = start("secret-theft", seed)
    o.tried("ask the Ultravisor for the guest's secrets as the host: List Secrets, Retrieve Secret")
    rs = [g.uvc("list_secrets"), g.uvc("retr_secret")]
    for r in rs:
        o.machine(str(r))
    o.facts["rc"] = [r.rc for r in rs]
    if any(r.ok for r in rs):
        o.fail("the host listed or retrieved secrets")
    g.destroy()
    host.close()
    o.tried("relay an attestation and keep everything that passes through the host")
    with RelyingParty() as rp:
        run = rp.boot()
    key = demo_disk_key().expose()
    traffic = json.dumps(run.answer or {}).encode() + json.dumps(run.sent or {}).encode()
    blobs = [base64.b64decode(s["asrcb"]) for s in (run.answer or {}).get("secrets", [])]
    found = any(key in b for b in blobs + [traffic])
    o.machine(f"the guest unlocked its disk: {run.unlocked}; the released add-secret request "
              f"({sum(map(len, blobs))} bytes) holds the key in the clear: {found}")
    if found:
        o.fail("the disk key crossed the host in the clear")
    o.why("secrets are released as add-secret requests sealed for the machine's host key and bound to the "
          "attested instance; only the Ultravisor opens them, and only the guest may retrieve them")
    return o


ATTACKS: tuple[Attack, ...] = (
    Attack("read-secret", "read a secure page through the host's view", read_secret),
    Attack("write-secret", "write into a secure page", write_secret),
    Attack("export-read", "export a secure page and read what the host gets", export_read),
    Attack("dma-read", "redirect a shared virtio descriptor at the secret page (device read)", dma_read),
    Attack("dma-write", "forge a block request that DMAs into the secret page", dma_write),
    Attack("swap-pages", "swap the ciphertexts of two exported pages", swap_pages),
    Attack("replay-export", "replay an older export of a page", replay_export),
    Attack("remap-page", "remap a guest page to a host frame of the host's choice", remap_page),
    Attack("transplant-page", "move an exported page into another instance of the same image",
           transplant_page),
    Attack("alias-page", "map a shared page onto the secret page's frame", alias_page),
    Attack("discard-page", "destroy a secure page under a running guest", discard_page),
    Attack("share-secret", "make the secret page shared from the host", share_secret),
    Attack("register-theft", "read registers from the state description and SIDA", register_theft),
    Attack("read-donated", "read the storage donated to the Ultravisor, during and after the guest's life",
           read_donated),
    Attack("sd-swap", "enter SIE with another guest's secure CPU handle or state description", sd_swap),
    Attack("reset-restart", "reset and restart without Prepare Reset", reset_restart),
    Attack("dump-without-key", "dump a guest whose header forbids it", dump_without_key),
    Attack("dump-ciphertext", "dump a guest whose owner allowed dumps, without the owner's key",
           dump_ciphertext),
    Attack("header-tamper", "boot an image with a modified SE header", header_tamper),
    Attack("image-tamper", "boot an image with a modified encrypted kernel", image_tamper),
    Attack("attest-replay", "replay an attestation answer, or give the guest a stale challenge",
           attest_replay),
    Attack("secret-theft", "take the guest's secrets from the UV or the relay", secret_theft),
)
