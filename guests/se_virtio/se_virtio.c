/* se_virtio.c: a secure guest's virtio-blk-ccw disk on subchannel 0.0.0000. The ORB, SCHIB and IRB stay in
 * the guest's secure storage (the Ultravisor copies them through the SIDA); everything the channel subsystem
 * and the device reach by address (CCWs, their data, the virtqueue, the request buffers, the indicators)
 * lies in two pages the guest shares with Set Shared Access, as Linux's DMA pool and bounce buffers do. Then
 * a channel program and a virtqueue request that point into a page the guest did not share: the host may
 * not touch it, so the channel program ends with a protection check and the device stops (needs reset). */
#include "shared.h"

struct pmcw {
    uint32_t intparm;
    uint16_t flags;
    uint16_t devno;
    uint8_t lpm, pnom, lpum, pim;
    uint16_t mbi;
    uint8_t pom, pam;
    uint8_t chpid[8];
    uint32_t chars;
} __attribute__((packed));

struct scsw {
    uint32_t ctrl;
    uint32_t cpa;
    uint8_t dstat, cstat;
    uint16_t count;
} __attribute__((packed));

struct schib {
    struct pmcw pmcw;
    struct scsw scsw;
    uint64_t mba;
    uint8_t md[4];
} __attribute__((packed, aligned(4)));

struct orb {
    uint32_t intparm, ctrl, cpa, res[5];
} __attribute__((aligned(4)));

struct irb {
    struct scsw scsw;
    uint32_t esw[5], ecw[8], emw[8];
} __attribute__((aligned(4)));

struct ccw1 {
    uint8_t cmd, flags;
    uint16_t count;
    uint32_t cda;
} __attribute__((aligned(8)));

struct vring_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
};

#define SID 0x10000u
#define PMCW_ENA 0x0080
#define ISC 3
#define CCW_SLI 0x20
#define SCSW_ALERT 0x10

/* the control blocks: secure storage (the I/O instructions' operands, moved through the SIDA) */
static struct schib schib;
static struct orb orb;
static struct irb irb;

/* shared page 1: channel programs, their data, the block request, the indicators */
static struct {
    struct ccw1 ccw;
    uint64_t indicators;
    uint8_t data[64];
    struct {
        uint32_t type, reserved;
        uint64_t sector;
    } hdr;
    uint8_t status;
    uint8_t sector[512] ALIGNED(8);
} io ALIGNED(4096);

/* shared page 2: the virtqueue (descriptors, available ring, used ring) */
static struct {
    struct vring_desc desc[8];
    uint16_t avail[2 + 8];
    uint8_t pad[2048 - 8 * 16 - 20];
    uint16_t used_hdr[2];
    uint32_t used[2 * 8];
} ring ALIGNED(4096);

/* a page the guest never shares */
static uint8_t secret[4096] ALIGNED(4096);

static volatile uint32_t io_count, io_sid, io_param;

static int io_hook(struct irq_frame *f)
{
    io_sid = frame_lc32(f, 0xb8);
    io_param = frame_lc32(f, 0xbc);
    io_count++;
    return 1;
}

static volatile uint16_t pgm_code;

static int pgm_hook(struct irq_frame *f)
{
    pgm_code = frame_lc16(f, 0x8e);
    return 1;  /* suppressed: the old PSW is after the instruction */
}

static void wait_for_io(void)
{
    struct psw psw = { psw_mask() | PSW_MASK_IO | PSW_MASK_WAIT, 0 };

    asm volatile("larl %%r1,0f\n stg %%r1,%0\n lpswe %1\n0:" : "=Q"(psw.addr) : "Q"(psw) : "r1", "memory");
}

static int io_insn_sch(uint32_t sid, void *op, int which)
{
    register uint32_t r1 asm("1") = sid;
    int cc;

    switch (which) {
    case 0: asm volatile("stsch 0(%2)\n ipm %0\n srl %0,28" : "=d"(cc) : "d"(r1), "a"(op) : "cc", "memory"); break;
    case 1: asm volatile("msch 0(%2)\n ipm %0\n srl %0,28" : "=d"(cc) : "d"(r1), "a"(op) : "cc", "memory"); break;
    case 2: asm volatile("ssch 0(%2)\n ipm %0\n srl %0,28" : "=d"(cc) : "d"(r1), "a"(op) : "cc", "memory"); break;
    default: asm volatile("tsch 0(%2)\n ipm %0\n srl %0,28" : "=d"(cc) : "d"(r1), "a"(op) : "cc", "memory"); break;
    }
    return cc;
}

static int tpi(uint32_t *words)
{
    int cc;

    asm volatile("tpi 0(%1)\n ipm %0\n srl %0,28" : "=d"(cc) : "a"(words) : "cc", "memory");
    return cc;
}

static long notify(uint64_t queue)
{
    register uint64_t r1 asm("1") = 3;
    register uint64_t r2 asm("2") = SID;
    register uint64_t r3 asm("3") = queue;
    register uint64_t r4 asm("4") = 0;

    asm volatile("diag 2,4,0x500" : "+d"(r2) : "d"(r1), "d"(r3), "d"(r4) : "memory", "cc");
    return (long)r2;
}

/* One CCW on the disk's subchannel, ended by an I/O interruption (or TPI when poll); returns dstat << 8 |
 * cstat of the IRB TEST SUBCHANNEL stored. */
static int run_ccw(uint8_t cmd, uint8_t flags, const void *data, uint16_t count, int poll)
{
    uint32_t words[2] = { 0, 0 };
    uint32_t before = io_count;
    int cc;

    io.ccw = (struct ccw1){ cmd, flags, count, (uint32_t)(uint64_t)data };
    orb = (struct orb){ .intparm = 0x1000 + cmd, .ctrl = 0x0080ff00, .cpa = (uint32_t)(uint64_t)&io.ccw };
    cc = io_insn_sch(SID, &orb, 2);
    if (cc)
        return 0x10000 | cc;
    if (poll) {
        cc = tpi(words);
        if (cc != 1 || words[0] != SID || words[1] != orb.intparm)
            printf("tpi: cc %d words %08x %08x\n", cc, words[0], words[1]);
    } else {
        wait_for_io();
        if (io_count != before + 1 || io_sid != SID || io_param != orb.intparm)
            printf("interruption: %u sid %08x param %08x\n", io_count - before, io_sid, io_param);
    }
    cc = io_insn_sch(SID, &irb, 3);
    if (cc)
        printf("tsch: cc %d\n", cc);
    return irb.scsw.dstat << 8 | irb.scsw.cstat;
}

static uint16_t le16(uint16_t v) { return (uint16_t)(v << 8 | v >> 8); }
static uint32_t le32(uint32_t v) { return __builtin_bswap32(v); }
static uint64_t le64(uint64_t v) { return __builtin_bswap64(v); }

static uint16_t used_seen;

/* One block request: header and status in the shared page, data at buf (shared or not). */
static int blk_request(uint32_t type, uint64_t sector, void *buf)
{
    uint16_t idx = le16(ring.avail[1]);

    io.hdr.type = le32(type);
    io.hdr.sector = le64(sector);
    ring.desc[0] = (struct vring_desc){ le64((uint64_t)&io.hdr), le32(16), le16(1), le16(1) };
    ring.desc[1] = (struct vring_desc){ le64((uint64_t)buf), le32(512), le16(type == 0 ? 3 : 1), le16(2) };
    ring.desc[2] = (struct vring_desc){ le64((uint64_t)&io.status), le32(1), le16(2), 0 };
    ring.avail[2 + idx % 8] = 0;
    ring.avail[1] = le16(idx + 1);
    io.status = 0xff;
    io.indicators = 0;
    if (notify(0) != 0)
        return -1;
    if (le16(ring.used_hdr[1]) == used_seen)
        return -2;  /* the device did not use the request */
    wait_for_io();  /* alert status: the queue's indicator bit is set */
    if (io_insn_sch(SID, &irb, 3) != 0 || !(irb.scsw.ctrl & SCSW_ALERT) || io.indicators != 1)
        printf("notification: ctrl %08x indicators %lx\n", irb.scsw.ctrl, io.indicators);
    used_seen++;
    return io.status;
}

int main(void)
{
    struct {
        uint64_t desc;
        uint32_t res;
        uint16_t index, num;
        uint64_t avail, used;
    } __attribute__((packed)) vq = { (uint64_t)ring.desc, 0, 0, 8, (uint64_t)ring.avail, (uint64_t)ring.used_hdr };
    uint32_t feat;
    uint64_t capacity;
    int r, cc;

    memset(secret, 's', sizeof(secret));
    share(&io);
    share(&ring);
    printf("shared: I/O page %p, virtqueue page %p; secret page %p not shared\n", (void *)&io, (void *)&ring,
           (void *)secret);
    set_io_hook(io_hook);
    ctl_set(6, 0x80000000UL >> ISC);

    cc = io_insn_sch(SID, &schib, 0);
    printf("stsch: cc %d, devno %04x, %s\n", cc, schib.pmcw.devno, schib.pmcw.flags & PMCW_ENA ? "enabled" : "disabled");
    schib.pmcw.flags |= PMCW_ENA | ISC << 11;
    cc = io_insn_sch(SID, &schib, 1);
    io_insn_sch(SID, &schib, 0);
    printf("msch: cc %d, now %s, subclass %d\n", cc, schib.pmcw.flags & PMCW_ENA ? "enabled" : "disabled",
           (schib.pmcw.flags >> 11) & 7);
    r = run_ccw(0xe4, CCW_SLI, io.data, 8, 0);
    printf("sense id (interruption): status %04x, cu %02x%02x model %02x\n", r, io.data[1], io.data[2], io.data[3]);
    r = run_ccw(0x03, 0, io.data, 0, 1);
    printf("no-operation (tpi): status %04x\n", r);

    memcpy(io.data, "\x00\x02\x00\x00", 4);  /* SET_VIRTIO_REV: revision 2 */
    r = run_ccw(0x83, 0, io.data, 4, 0);
    memcpy(io.data, "\0\0\0\0\1", 5);  /* READ_FEAT: word 1 */
    r |= run_ccw(0x12, 0, io.data, 5, 0);
    memcpy(&feat, io.data, 4);
    printf("virtio: revision 2 %s, VERSION_1 %s, ACCESS_PLATFORM %s\n", r == 0x0c00 ? "accepted" : "refused",
           le32(feat) & 1 ? "offered" : "missing", le32(feat) & 2 ? "offered" : "missing");
    memcpy(io.data, "\3\0\0\0\1", 5);  /* WRITE_FEAT word 1: VERSION_1 and ACCESS_PLATFORM */
    r = run_ccw(0x11, 0, io.data, 5, 0);
    io.data[0] = 0x0b;  /* acknowledge, driver, features OK */
    r |= run_ccw(0x31, 0, io.data, 1, 0);
    memcpy(io.data, &vq, sizeof(vq));
    r |= run_ccw(0x13, 0, io.data, sizeof(vq), 0);
    memcpy(io.data, &(uint64_t){ (uint64_t)&io.indicators }, 8);
    r |= run_ccw(0x43, 0, io.data, 8, 0);
    io.data[0] = 0x0f;
    r |= run_ccw(0x31, 0, io.data, 1, 0);
    r |= run_ccw(0x22, CCW_SLI, io.data, 8, 0);
    memcpy(&capacity, io.data, 8);
    printf("virtio-blk: set up %s, capacity %lu sectors\n", r == 0x0c00 ? "ok" : "failed", le64(capacity));

    r = blk_request(0, 0, io.sector);
    printf("read sector 0 (bounce buffer): status %d, \"%.*s\"\n", r, 32, (char *)io.sector);
    memset(io.sector, 'w', sizeof(io.sector));
    r = blk_request(1, 1, io.sector);
    printf("wrote sector 1: status %d\n", r);
    memset(io.sector, 0, sizeof(io.sector));
    r = blk_request(0, 1, io.sector);
    printf("read sector 1 back: status %d, %s\n", r,
           io.sector[0] == 'w' && io.sector[511] == 'w' ? "as written" : "different");

    /* what the Ultravisor checks itself, before the host is asked */
    set_pgm_hook(pgm_hook);
    pgm_code = 0;
    io_insn_sch(SID, (char *)&orb + 2, 2);
    printf("ssch with an ORB off its word boundary: program interruption %#x\n", pgm_code);
    pgm_code = 0;
    io_insn_sch(0x1234, &schib, 0);
    printf("stsch of a subsystem id without its one bit: program interruption %#x\n", pgm_code);
    set_pgm_hook(0);

    /* the host's side may not touch a page the guest did not share */
    r = run_ccw(0xe4, CCW_SLI, secret, 8, 0);
    printf("channel program into the secret page: status %04x (%s)\n", r,
           r & 0x10 ? "protection check" : "no protection check");
    r = blk_request(0, 0, secret);
    printf("virtio-blk read into the secret page: %s\n", r == -2 ? "not used" : "used");
    r = run_ccw(0x72, 0, io.data, 1, 0);  /* READ_STATUS */
    printf("device status %02x: %s\n", io.data[0], io.data[0] & 0x40 ? "needs reset" : "running");
    for (r = 0; r < 4096 && secret[r] == 's'; r++)
        ;
    printf("secret page %s\n", r == 4096 ? "unchanged" : "CHANGED");
    exit(0);
}
