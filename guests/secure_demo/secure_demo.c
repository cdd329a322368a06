/*
 * secure_demo.c: the bundled secure guest. It keeps a secret in a page it never shares, opens two pages
 * to the host with Set Shared Access (the console's queue page and its bounce buffer), prints through the
 * virtio-like console (DIAGNOSE 0x500), writes and reads back a sector of the block device through a
 * shared bounce buffer, and checks that its secret survived whatever the host did meanwhile.
 *
 * Protocol: the line "secret page at 0x..." is the moment a host may try to read the secret page; the
 * guest then prints "secret intact: yes" if the page still holds exactly what it wrote.
 * Expected exit: EXIT: STATUS=1 (SCLP console), then SIGP STOP.
 */
#include "runtime.h"

#define UVC_QUERY               0x0001
#define UVC_SET_SHARED_ACCESS   0x1000
#define ZVQ_MAGIC               0x5a565131u
#define ZVQ_NUM                 8
#define DESC_NEXT               1
#define DESC_WRITE              2
#define DEV_CONSOLE             1
#define DEV_BLOCK               2
#define KVM_S390_VIRTIO_CCW_NOTIFY 3

struct uv_cb_header {
    uint16_t len;           /* 0x00 */
    uint16_t cmd;           /* 0x02 */
    uint16_t rc;            /* 0x04 */
    uint16_t rrc;           /* 0x06 */
} __attribute__((packed));

struct uv_cb_share {
    struct uv_cb_header h;  /* 0x00 */
    uint64_t reserved08[3]; /* 0x08 */
    uint64_t paddr;         /* 0x20 */
    uint64_t reserved28;    /* 0x28 */
} __attribute__((packed, aligned(8)));

struct uv_cb_qui {
    struct uv_cb_header h;  /* 0x00 */
    uint64_t reserved08;    /* 0x08 */
    uint64_t inst_calls[4]; /* 0x10 */
    uint8_t rest[0x120 - 0x30];
} __attribute__((packed, aligned(8)));

_Static_assert(sizeof(struct uv_cb_share) == 0x30, "uv_cb_share");
_Static_assert(sizeof(struct uv_cb_qui) == 0x120, "uv_cb_qui");

struct zvq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
} __attribute__((packed));

struct zvq_used {
    uint32_t id;
    uint32_t len;
} __attribute__((packed));

struct zvq {
    uint32_t magic;             /* 0x000 */
    uint16_t num;               /* 0x004 */
    volatile uint16_t avail_idx;/* 0x006 */
    volatile uint16_t used_idx; /* 0x008 */
    uint16_t reserved[3];       /* 0x00a */
    struct zvq_desc desc[32];   /* 0x010 */
    uint16_t avail[32];         /* 0x210 */
    struct zvq_used used[32];   /* 0x250 */
} __attribute__((packed));

_Static_assert(sizeof(struct zvq) == 0x350, "zvq layout");

/* Each of these is a page of its own: sharing works on whole pages. */
static union { struct zvq q; uint8_t page[4096]; } cons_q ALIGNED(4096);
static char cons_buf[4096] ALIGNED(4096);
static union { struct zvq q; uint8_t page[4096]; } blk_q ALIGNED(4096);
static uint8_t blk_buf[4096] ALIGNED(4096);
static uint8_t secret[4096] ALIGNED(4096);

static int uvc(void *cb)
{
    int cc;

    asm volatile(".insn rre,0xb9a40000,0,%[cb]\n\t"
                 "ipm %[cc]\n\t"
                 "srl %[cc],28"
                 : [cc] "=d"(cc)
                 : [cb] "a"(cb)
                 : "cc", "memory");
    return cc;
}

static void share(const void *page)
{
    struct uv_cb_share cb;

    memset(&cb, 0, sizeof(cb));
    cb.h.len = sizeof(cb);
    cb.h.cmd = UVC_SET_SHARED_ACCESS;
    cb.paddr = (uint64_t)page;
    if (uvc(&cb) != 0 || cb.h.rc != 1)
        panic("Set Shared Access of %p failed: rc %#x\n", page, cb.h.rc);
}

static long notify(uint64_t dev, struct zvq *q)
{
    register uint64_t r1 asm("1") = KVM_S390_VIRTIO_CCW_NOTIFY;
    register uint64_t r2 asm("2") = dev;
    register uint64_t r3 asm("3") = 0;
    register uint64_t r4 asm("4") = (uint64_t)q;

    asm volatile("diag %%r2,%%r4,0x500" : "+d"(r2) : "d"(r1), "d"(r3), "d"(r4) : "memory", "cc");
    return (long)r2;
}

static void queue_init(struct zvq *q)
{
    memset(q, 0, sizeof(*q));
    q->magic = ZVQ_MAGIC;
    q->num = ZVQ_NUM;
}

/* Post the chain starting at descriptor 0 and wait until the device has used it. */
static long submit(uint64_t dev, struct zvq *q)
{
    uint16_t idx = q->avail_idx;
    long rc;

    q->avail[idx % ZVQ_NUM] = 0;
    asm volatile("bcr 14,0" : : : "memory");
    q->avail_idx = (uint16_t)(idx + 1);
    rc = notify(dev, q);
    if (rc == 0 && q->used_idx != q->avail_idx)
        rc = -1;
    return rc;
}

static void cons_write(const char *s, size_t n)
{
    struct zvq *q = &cons_q.q;

    while (n > 0) {
        size_t chunk = n < sizeof(cons_buf) ? n : sizeof(cons_buf);
        memcpy(cons_buf, s, chunk);
        q->desc[0].addr = (uint64_t)cons_buf;
        q->desc[0].len = (uint32_t)chunk;
        q->desc[0].flags = 0;
        if (submit(DEV_CONSOLE, q) != 0)
            panic("console device failed\n");
        s += chunk;
        n -= chunk;
    }
}

static void cprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void cprintf(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(line) - 1)
        n = sizeof(line) - 1;
    cons_write(line, (size_t)n);
}

/* One block request: header, data, status byte, all in the shared bounce page blk_buf. */
static int blk_rw(uint32_t type, uint64_t sector, void *data)
{
    struct zvq *q = &blk_q.q;
    uint8_t *hdr = blk_buf, *buf = blk_buf + 512, *status = blk_buf + 1024;

    memset(hdr, 0, 16);
    hdr[3] = (uint8_t)type;
    memcpy(hdr + 8, &sector, 8);
    if (type == 1)
        memcpy(buf, data, 512);
    *status = 0xff;
    q->desc[0] = (struct zvq_desc){ (uint64_t)hdr, 16, DESC_NEXT, 1 };
    q->desc[1] = (struct zvq_desc){ (uint64_t)buf, 512, (uint16_t)(DESC_NEXT | (type == 0 ? DESC_WRITE : 0)), 2 };
    q->desc[2] = (struct zvq_desc){ (uint64_t)status, 1, DESC_WRITE, 0 };
    if (submit(DEV_BLOCK, q) != 0)
        return -1;
    if (type == 0)
        memcpy(data, buf, 512);
    return *status;
}

static uint64_t digest(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;   /* FNV-1a */
    size_t i;

    for (i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

int main(const char *cmdline)
{
    static const char words[] = "zuv secret: the launch code is 0451-ALPHA, keep it in the guest";
    static struct uv_cb_qui qui;
    uint8_t sector[512], back[512];
    uint64_t before, after;
    int i;

    /* 1. the secret, in a page nobody shares */
    memset(secret, 0, sizeof(secret));
    memcpy(secret, words, sizeof(words));
    for (i = 256; i < 4096; i++)
        secret[i] = (uint8_t)(i * 37 + 11);
    before = digest(secret, sizeof(secret));

    /* 2. open the console's queue and bounce buffer, and the block device's, to the host */
    share(&cons_q);
    share(cons_buf);
    share(&blk_q);
    share(blk_buf);
    queue_init(&cons_q.q);
    queue_init(&blk_q.q);

    memset(&qui, 0, sizeof(qui));
    qui.h.len = sizeof(qui);
    qui.h.cmd = UVC_QUERY;
    uvc(&qui);
    cprintf("Hello from a secure guest (IBM Secure Execution on zuv)\n");
    cprintf("Ultravisor query: rc %#x, Set/Remove Shared Access installed: %s\n", qui.h.rc,
            (qui.inst_calls[0] >> 54 & 3) == 3 ? "yes (a secure guest)" : "no");
    cprintf("console: virtio-like queue at %#lx, bounce buffer at %#lx (both shared)\n",
            (unsigned long)&cons_q, (unsigned long)cons_buf);

    /* 3. the block device, through its own bounce buffer */
    for (i = 0; i < 512; i++)
        sector[i] = (uint8_t)(i ^ 0x5a);
    if (blk_rw(1, 7, sector) != 0 || blk_rw(0, 7, back) != 0)
        cprintf("block device: request failed\n");
    else
        cprintf("block device: sector 7 written and read back through the bounce buffer: %s\n",
                memcmp(sector, back, sizeof(sector)) == 0 ? "ok" : "MISMATCH");

    /* 4. the moment a host may try to read the secret */
    cprintf("secret page at %#lx (never shared), digest %016lx\n", (unsigned long)secret, before);
    after = digest(secret, sizeof(secret));
    cprintf("secret intact: %s\n", after == before ? "yes" : "NO");
    return after == before ? 0 : 1;
}
