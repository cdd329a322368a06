/*
 * secure_demo.c: the bundled secure guest. It keeps a secret in a page it never shares, opens four pages
 * to the host with Set Shared Access (the console's and the block device's queue pages and bounce buffers;
 * runtime/shared.c), prints through the virtio-like console (DIAGNOSE 0x500), writes and reads back a
 * sector of the block device through its bounce buffer, and checks that its secret survived whatever the
 * host did meanwhile.
 *
 * Protocol: the line "secret page at 0x..." is the moment a host may try to read the secret page; the
 * guest then prints "secret intact: yes" if the page still holds exactly what it wrote.
 * Expected exit: EXIT: STATUS=1 (SCLP console), then SIGP STOP.
 */
#include "shared.h"

#define DEV_CONSOLE             1
#define DEV_BLOCK               2

/* Each of these is a page of its own: sharing works on whole pages. */
static union { struct zvq q; uint8_t page[4096]; } cons_q ALIGNED(4096);
static char cons_buf[4096] ALIGNED(4096);
static union { struct zvq q; uint8_t page[4096]; } blk_q ALIGNED(4096);
static uint8_t blk_buf[4096] ALIGNED(4096);
static uint8_t secret[4096] ALIGNED(4096);

static void cons_write(const char *s, size_t n)
{
    struct zvq *q = &cons_q.q;

    while (n > 0) {
        size_t chunk = n < sizeof(cons_buf) ? n : sizeof(cons_buf);
        memcpy(cons_buf, s, chunk);
        q->desc[0].addr = (uint64_t)cons_buf;
        q->desc[0].len = (uint32_t)chunk;
        q->desc[0].flags = 0;
        if (zvq_submit(DEV_CONSOLE, q) != 0)
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
    if (zvq_submit(DEV_BLOCK, q) != 0)
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
    zvq_init(&cons_q.q);
    zvq_init(&blk_q.q);

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
