/* ccw.c: channel I/O through the channel subsystem: enumerate (STSCH), enable (MSCH), SENSE ID (SSCH) ended
 * by an I/O interruption or taken with TPI, TSCH, and a virtio-blk-ccw disk read and written through the
 * virtio-ccw transport (channel commands, a split ring, DIAGNOSE 0x500 notifications, classic indicators). */
#include "runtime.h"

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

#define PMCW_ENA 0x0080
#define PMCW_DNV 0x0001
#define ISC 3
#define CCW_SLI 0x20
#define SCSW_PENDING_PRIMARY_SECONDARY 0x7
#define SCSW_ALERT 0x10

static int stsch(uint32_t sid, struct schib *s)
{
    register uint32_t r1 asm("1") = sid;
    int cc;

    asm volatile("stsch 0(%2)\n ipm %0\n srl %0,28" : "=d"(cc) : "d"(r1), "a"(s) : "cc", "memory");
    return cc;
}

static int msch(uint32_t sid, struct schib *s)
{
    register uint32_t r1 asm("1") = sid;
    int cc;

    asm volatile("msch 0(%2)\n ipm %0\n srl %0,28" : "=d"(cc) : "d"(r1), "a"(s) : "cc", "memory");
    return cc;
}

static int ssch(uint32_t sid, struct orb *o)
{
    register uint32_t r1 asm("1") = sid;
    int cc;

    asm volatile("ssch 0(%2)\n ipm %0\n srl %0,28" : "=d"(cc) : "d"(r1), "a"(o) : "cc", "memory");
    return cc;
}

static int tsch(uint32_t sid, struct irb *i)
{
    register uint32_t r1 asm("1") = sid;
    int cc;

    asm volatile("tsch 0(%2)\n ipm %0\n srl %0,28" : "=d"(cc) : "d"(r1), "a"(i) : "cc", "memory");
    return cc;
}

static int tpi(uint32_t *words)
{
    int cc;

    asm volatile("tpi 0(%1)\n ipm %0\n srl %0,28" : "=d"(cc) : "a"(words) : "cc", "memory");
    return cc;
}

static long notify(uint32_t sid, uint64_t queue)
{
    register uint64_t r1 asm("1") = 3;
    register uint64_t r2 asm("2") = sid;
    register uint64_t r3 asm("3") = queue;
    register uint64_t r4 asm("4") = 0;

    asm volatile("diag 2,4,0x500" : "+d"(r2) : "d"(r1), "d"(r3), "d"(r4) : "memory", "cc");
    return (long)r2;
}

static int rchp(uint8_t chpid)
{
    register uint64_t r1 asm("1") = chpid;
    int cc;

    asm volatile("rchp\n ipm %0\n srl %0,28" : "=d"(cc) : "d"(r1) : "cc");
    return cc;
}

static int stcrw(uint32_t *crw)
{
    int cc;

    asm volatile("stcrw %1\n ipm %0\n srl %0,28" : "=d"(cc), "=Q"(*crw) : : "cc");
    return cc;
}

static volatile uint32_t io_count, io_sid, io_param, io_ident, mck_count;
static volatile uint64_t mck_code;

static int mck_hook(struct irq_frame *f)
{
    mck_code = frame_lc64(f, 0xe8);
    mck_count++;
    return 1;
}

/* Load an enabled-wait PSW (current mask + machine check + wait) and return after one machine check. */
static void wait_for_mck(void)
{
    struct psw psw = { psw_mask() | PSW_MASK_MCHECK | PSW_MASK_WAIT, 0 };

    asm volatile("larl %%r1,0f\n stg %%r1,%0\n lpswe %1\n0:" : "=Q"(psw.addr) : "Q"(psw) : "r1", "memory");
}

/* RESET CHANNEL PATH: its channel report, announced by a channel-report-pending machine check. */
static void channel_report(void)
{
    uint32_t crw = 0xfeedc0fe;
    int cc;

    set_mck_hook(mck_hook);
    ctl_set_bit(14, 1UL << 28);  /* channel-report-pending subclass */
    printf("stcrw with no report: cc %d, crw %08x\n", stcrw(&crw), crw);
    cc = rchp(0);
    wait_for_mck();
    printf("rchp 0: cc %d; machine checks %u, channel report pending %s, PSW and registers valid %s\n", cc,
           mck_count, mck_code & (1UL << 54) ? "yes" : "no",
           (mck_code & 0x00000f0800000000UL) == 0x00000f0800000000UL ? "yes" : "no");
    cc = stcrw(&crw);
    printf("stcrw: cc %d, source %x (channel path), recovery %02x, id %04x\n", cc, crw >> 24 & 0xf, crw >> 16 & 0x3f,
           crw & 0xffff);
    printf("stcrw again: cc %d\n", stcrw(&crw));
    printf("rchp of a path not installed: cc %d\n", rchp(0x42));
}

static int io_hook(struct irq_frame *f)
{
    io_sid = frame_lc32(f, 0xb8);
    io_param = frame_lc32(f, 0xbc);
    io_ident = frame_lc32(f, 0xc0);
    io_count++;
    return 1;
}

/* Load an enabled-wait PSW (current mask + I/O + wait) and return after one I/O interruption. */
static void wait_for_io(void)
{
    struct psw psw = { psw_mask() | PSW_MASK_IO | PSW_MASK_WAIT, 0 };

    asm volatile("larl %%r1,0f\n stg %%r1,%0\n lpswe %1\n0:" : "=Q"(psw.addr) : "Q"(psw) : "r1", "memory");
}

static struct schib schib;
static struct irb irb;
static struct orb orb;
static struct ccw1 ccw;
static uint8_t buf[256] ALIGNED(8);

/* Run one CCW on the subchannel and complete it: by an I/O interruption (wait) or by TPI (poll). */
static int run_ccw(uint32_t sid, uint8_t cmd, uint8_t flags, void *data, uint16_t count, int poll)
{
    uint32_t words[2] = { 0, 0 };
    int cc;

    ccw = (struct ccw1){ cmd, flags, count, (uint32_t)(uint64_t)data };
    orb = (struct orb){ .intparm = 0x1000 + cmd, .ctrl = 0x0080ff00, .cpa = (uint32_t)(uint64_t)&ccw };
    cc = ssch(sid, &orb);
    if (cc)
        return 0x100 | cc;
    if (poll) {
        cc = tpi(words);
        if (cc != 1 || words[0] != sid || words[1] != orb.intparm)
            printf("tpi: cc %d words %08x %08x\n", cc, words[0], words[1]);
    } else {
        uint32_t before = io_count;

        wait_for_io();
        if (io_count != before + 1 || io_sid != sid || io_param != orb.intparm || io_ident != ISC << 27)
            printf("interruption: %u sid %08x param %08x id %08x\n", io_count - before, io_sid, io_param,
                   io_ident);
    }
    cc = tsch(sid, &irb);
    if (cc || (irb.scsw.ctrl & 7) != SCSW_PENDING_PRIMARY_SECONDARY)
        printf("tsch: cc %d ctrl %08x\n", cc, irb.scsw.ctrl);
    return irb.scsw.dstat << 8 | irb.scsw.cstat;
}

/* ---- virtio-blk through virtio-ccw ---- */
struct vring_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
};

static struct {
    struct vring_desc desc[8];
    uint16_t avail[2 + 8];
    uint8_t pad[4096 - 8 * 16 - 20];
    uint16_t used_hdr[2];
    uint32_t used[2 * 8];
} ring ALIGNED(4096);
static uint64_t indicators ALIGNED(8);
static struct {
    uint32_t type, reserved;
    uint64_t sector;
} blk_hdr ALIGNED(8);
static uint8_t sector_buf[512] ALIGNED(8);
static uint8_t blk_status;
static uint16_t used_seen;

static uint16_t le16(uint16_t v) { return (uint16_t)(v << 8 | v >> 8); }
static uint32_t le32(uint32_t v) { return __builtin_bswap32(v); }
static uint64_t le64(uint64_t v) { return __builtin_bswap64(v); }

static int blk_request(uint32_t sid, uint32_t type, uint64_t sector)
{
    uint16_t idx = le16(ring.avail[1]);

    blk_hdr.type = le32(type);
    blk_hdr.sector = le64(sector);
    ring.desc[0] = (struct vring_desc){ le64((uint64_t)&blk_hdr), le32(16), le16(1), le16(1) };
    ring.desc[1] = (struct vring_desc){ le64((uint64_t)sector_buf), le32(512), le16(type == 0 ? 3 : 1), le16(2) };
    ring.desc[2] = (struct vring_desc){ le64((uint64_t)&blk_status), le32(1), le16(2), 0 };
    ring.avail[2 + idx % 8] = 0;
    ring.avail[1] = le16(idx + 1);
    blk_status = 0xff;
    indicators = 0;
    if (notify(sid, 0) != 0)
        return -1;
    wait_for_io();  /* alert status: the queue's indicator bit is set */
    if (tsch(sid, &irb) != 0 || !(irb.scsw.ctrl & SCSW_ALERT) || indicators != 1)
        printf("notification: ctrl %08x indicators %lx\n", irb.scsw.ctrl, indicators);
    if (le16(ring.used_hdr[1]) != ++used_seen)
        printf("used index %u\n", le16(ring.used_hdr[1]));
    return blk_status;
}

static void virtio_blk(uint32_t sid)
{
    uint32_t feat[2];
    uint64_t capacity;
    struct {
        uint64_t desc;
        uint32_t res;
        uint16_t index, num;
        uint64_t avail, used;
    } __attribute__((packed)) vq = { (uint64_t)ring.desc, 0, 0, 8, (uint64_t)ring.avail, (uint64_t)ring.used_hdr };
    uint64_t ind = (uint64_t)&indicators;
    uint8_t status;
    int r;

    memcpy(buf, "\x00\x01\x00\x00", 4);  /* SET_VIRTIO_REV: revision 1 */
    r = run_ccw(sid, 0x83, 0, buf, 4, 0);
    memcpy(buf, "\0\0\0\0\1", 5);  /* READ_FEAT index 1 */
    r |= run_ccw(sid, 0x12, 0, buf, 5, 0);
    memcpy(feat, buf, 4);
    printf("virtio-blk: revision 1 %s, VERSION_1 offered %s\n", r == 0x0c00 ? "accepted" : "refused",
           le32(feat[0]) & 1 ? "yes" : "no");
    memcpy(buf, "\1\0\0\0\1", 5);  /* WRITE_FEAT: VERSION_1 */
    run_ccw(sid, 0x11, 0, buf, 5, 0);
    status = 0x0b;  /* acknowledge, driver, features OK */
    run_ccw(sid, 0x31, 0, &status, 1, 0);
    r = run_ccw(sid, 0x13, 0, &vq, sizeof(vq), 0);
    r |= run_ccw(sid, 0x43, 0, &ind, 8, 0);
    status = 0x0f;
    r |= run_ccw(sid, 0x31, 0, &status, 1, 0);
    r |= run_ccw(sid, 0x22, CCW_SLI, buf, 8, 0);
    memcpy(&capacity, buf, 8);
    printf("virtio-blk: queue and indicators set up %s, capacity %lu sectors\n", r == 0x0c00 ? "ok" : "failed",
           le64(capacity));
    r = blk_request(sid, 0, 0);
    printf("virtio-blk: read sector 0: status %d, \"%.*s\"\n", r, 24, (char *)sector_buf);
    memset(sector_buf, 'w', sizeof(sector_buf));
    r = blk_request(sid, 1, 1);
    printf("virtio-blk: wrote sector 1: status %d\n", r);
    r = blk_request(sid, 4, 0);
    printf("virtio-blk: flush: status %d\n", r);
    memset(sector_buf, 0, sizeof(sector_buf));
    r = blk_request(sid, 0, 1);
    printf("virtio-blk: read sector 1 back: status %d, %s\n", r, sector_buf[0] == 'w' && sector_buf[511] == 'w'
           ? "as written" : "different");
    r = blk_request(sid, 0, capacity ? le64(capacity) : 1);
    printf("virtio-blk: read beyond the disk: status %d\n", r);
}

int main(void)
{
    uint32_t sid, blk_sid = 0;
    int n, cc;

    set_io_hook(io_hook);
    ctl_set(6, 0x80000000UL >> ISC);  /* I/O-interruption subclass 3 */
    for (n = 0; n < 0x10000; n++) {
        sid = 0x10000 | n;
        cc = stsch(sid, &schib);
        if (cc)
            break;
        printf("subchannel %08x: devno %04x, device %s, path mask %02x, chpid %02x, %s\n", sid,
               schib.pmcw.devno, schib.pmcw.flags & PMCW_DNV ? "valid" : "not valid", schib.pmcw.pim,
               schib.pmcw.chpid[0], schib.pmcw.flags & PMCW_ENA ? "enabled" : "disabled");
        printf("  ssch while disabled: cc %d\n", run_ccw(sid, 0xe4, CCW_SLI, buf, 8, 0) & 0xff);
        schib.pmcw.flags |= PMCW_ENA | ISC << 11;
        schib.pmcw.intparm = 0;
        cc = msch(sid, &schib);
        stsch(sid, &schib);
        printf("  msch: cc %d, now %s with subclass %d\n", cc, schib.pmcw.flags & PMCW_ENA ? "enabled" : "disabled",
               (schib.pmcw.flags >> 11) & 7);
        memset(buf, 0, sizeof(buf));
        cc = run_ccw(sid, 0xe4, CCW_SLI, buf, sizeof(buf), 0);
        printf("  sense id (interruption): status %04x, cu %02x%02x model %02x, residual %u\n", cc, buf[1], buf[2],
               buf[3], irb.scsw.count);
        if (buf[1] == 0x38 && buf[2] == 0x32 && buf[3] == 2 && !blk_sid)
            blk_sid = sid;
        cc = run_ccw(sid, 0xe4, 0, buf, 4, 1);
        printf("  sense id (tpi), count 4, no SLI: status %04x\n", cc);
        cc = run_ccw(sid, 0x03, 0, buf, 0, 1);
        printf("  no-operation: status %04x\n", cc);
        if (blk_sid == sid)
            continue;  /* a virtio command before SET_VIRTIO_REV would fix the device's revision at 0 */
        cc = run_ccw(sid, 0x7b, 0, buf, 1, 1);
        cc = cc << 16 | run_ccw(sid, 0x04, 0, buf, 32, 1);
        printf("  unknown command then sense: status %04x / %04x, sense byte 0 %02x\n", cc >> 16, cc & 0xffff,
               buf[0]);
    }
    printf("stsch beyond the last subchannel: cc %d after %d subchannels\n", cc, n);
    printf("tsch of subchannel 0xffff: cc %d\n", tsch(0x1ffff, &irb));
    if (n)
        channel_report();
    if (blk_sid)
        virtio_blk(blk_sid);
    exit(0);
}
