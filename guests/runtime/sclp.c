/* sclp.c: SCLP service calls and the ASCII console (Write Event Mask, Write/Read Event Data). */
#include "runtime.h"

#define SCLP_CMD_READ_SCP_INFO      0x00020001u
#define SCLP_CMD_WRITE_EVENT_MASK   0x00780005u
#define SCLP_CMD_WRITE_EVENT_DATA   0x00760005u
#define SCLP_CMD_READ_EVENT_DATA    0x00770005u
#define SCLP_RC_NORMAL_COMPLETION   0x0020
#define SCLP_EVENT_ASCII_CONSOLE    0x1a
#define SCLP_EVENT_MASK_ASCII       0x00000040u  /* mask bit of event type 0x1A: 1 << (32 - 0x1a) */
#define SCCB_SIZE                   4096

/* SCCB header (offsets 0..7). */
struct sccb_header {
    uint16_t length;          /* 0 */
    uint8_t function_code;    /* 2 */
    uint8_t control_mask[3];  /* 3 */
    uint16_t response_code;   /* 6 */
} __attribute__((packed));

/* Event buffer header (offsets 0..5 of each event). */
struct evbuf_header {
    uint16_t length;          /* 0 */
    uint8_t type;             /* 2 */
    uint8_t flags;            /* 3 */
    uint16_t reserved;        /* 4 */
} __attribute__((packed));

/* Write Event Mask SCCB with 4-byte masks. */
struct write_event_mask {
    struct sccb_header h;     /* 0 */
    uint16_t reserved;        /* 8 */
    uint16_t mask_length;     /* 10 */
    uint32_t cp_receive_mask; /* 12: events the program accepts */
    uint32_t cp_send_mask;    /* 16: events the program sends */
    uint32_t send_mask;       /* 20: events the SCLP can send (output) */
    uint32_t receive_mask;    /* 24: events the SCLP accepts (output) */
} __attribute__((packed));

/* Read SCP Info response, the fields used here. */
struct read_info {
    struct sccb_header h;     /* 0 */
    uint16_t rnmax;           /* 8: number of storage increments (0: see rnmax2) */
    uint8_t rnsize;           /* 10: increment size in MiB (0: see rnsize2) */
    uint8_t reserved1[5];     /* 11 */
    uint16_t entries_cpu;     /* 16: number of CPU entries */
    uint16_t offset_cpu;      /* 18 */
    uint8_t reserved2[80];    /* 20 */
    uint32_t rnsize2;         /* 100 */
    uint64_t rnmax2;          /* 104 */
} __attribute__((packed));

_Static_assert(sizeof(struct read_info) == 112, "read info");
_Static_assert(sizeof(struct sccb_header) == 8, "sccb header");
_Static_assert(sizeof(struct evbuf_header) == 6, "event buffer header");
_Static_assert(sizeof(struct write_event_mask) == 28, "write event mask");

static uint8_t sccb[SCCB_SIZE] ALIGNED(4096);
static volatile int sclp_busy;
static volatile uint64_t sclp_busy_sccb;
static int sclp_masks_written;
volatile uint16_t sclp_last_response;
volatile int sclp_input_pending;

static int servc(uint32_t cmd, uint64_t addr)
{
    int cc;

    asm volatile(".insn rre,0xb2200000,%[cmd],%[addr]\n\t"
                 "ipm %[cc]\n\t"
                 "srl %[cc],28"
                 : [cc] "=d"(cc)
                 : [cmd] "d"((uint64_t)cmd), [addr] "a"(addr)
                 : "cc", "memory");
    return cc;
}

/* Called by the interrupt dispatcher for a service-signal external interruption (code 0x2401). */
void rt_sclp_service_signal(uint32_t param)
{
    if (sclp_busy && (param & ~7u) == (uint32_t)sclp_busy_sccb)
        sclp_busy = 0;
    if (param & 1)
        sclp_input_pending = 1;
}

int sclp_service_call(uint32_t cmd, void *block)
{
    int cc;

    sclp_busy_sccb = (uint64_t)block;
    sclp_busy = 1;
    cc = servc(cmd, (uint64_t)block);
    if (cc != 0) {
        sclp_busy = 0;
        return cc;
    }
    while (sclp_busy)
        wait_for_ext();
    sclp_last_response = ((struct sccb_header *)block)->response_code;
    return 0;
}

static void sclp_write_event_mask(void)
{
    struct write_event_mask *m = (struct write_event_mask *)sccb;

    memset(sccb, 0, sizeof(*m));
    m->h.length = sizeof(*m);
    m->mask_length = 4;
    m->cp_receive_mask = SCLP_EVENT_MASK_ASCII;
    m->cp_send_mask = SCLP_EVENT_MASK_ASCII;
    sclp_service_call(SCLP_CMD_WRITE_EVENT_MASK, m);
    sclp_masks_written = 1;
}

void console_write(const char *s, size_t n)
{
    const size_t room = SCCB_SIZE - sizeof(struct sccb_header) - sizeof(struct evbuf_header);

    if (!sclp_masks_written)
        sclp_write_event_mask();
    while (n > 0) {
        size_t chunk = n < room ? n : room;
        struct sccb_header *h = (struct sccb_header *)sccb;
        struct evbuf_header *e = (struct evbuf_header *)(sccb + sizeof(*h));

        memset(sccb, 0, sizeof(*h) + sizeof(*e));
        h->length = (uint16_t)(sizeof(*h) + sizeof(*e) + chunk);
        e->length = (uint16_t)(sizeof(*e) + chunk);
        e->type = SCLP_EVENT_ASCII_CONSOLE;
        memcpy(sccb + sizeof(*h) + sizeof(*e), s, chunk);
        sclp_service_call(SCLP_CMD_WRITE_EVENT_DATA, sccb);
        s += chunk;
        n -= chunk;
    }
}

size_t console_read(char *buf, size_t size)
{
    struct sccb_header *h = (struct sccb_header *)sccb;
    size_t got = 0, off;

    if (!sclp_masks_written)
        sclp_write_event_mask();
    sclp_input_pending = 0;
    memset(sccb, 0, SCCB_SIZE);
    h->length = SCCB_SIZE;
    h->function_code = 0;  /* unconditional read */
    if (sclp_service_call(SCLP_CMD_READ_EVENT_DATA, sccb) != 0 || h->response_code != SCLP_RC_NORMAL_COMPLETION)
        return 0;
    for (off = sizeof(*h); off + sizeof(struct evbuf_header) <= h->length && off < SCCB_SIZE;) {
        struct evbuf_header *e = (struct evbuf_header *)(sccb + off);
        size_t len = e->length, i;

        if (len < sizeof(*e) || off + len > SCCB_SIZE)
            break;
        /* ASCII console data: a 0x00 type byte, then the characters. */
        if (e->type == SCLP_EVENT_ASCII_CONSOLE && len > sizeof(*e) + 1) {
            for (i = sizeof(*e) + 1; i < len && got < size; i++)
                buf[got++] = (char)sccb[off + i];
        }
        off += len;
    }
    return got;
}

int sclp_read_scp_info(uint64_t *memory, unsigned *cpus)
{
    struct read_info *ri = (struct read_info *)sccb;
    uint64_t size, count;

    memset(sccb, 0, SCCB_SIZE);
    ri->h.length = SCCB_SIZE;
    if (sclp_service_call(SCLP_CMD_READ_SCP_INFO, ri) != 0)
        return -1;
    if (ri->h.response_code != 0x0010)
        return ri->h.response_code;
    size = ri->rnsize ? ri->rnsize : ri->rnsize2;
    count = ri->rnmax ? ri->rnmax : ri->rnmax2;
    *memory = (size << 20) * count;
    *cpus = ri->entries_cpu;
    return 0;
}

size_t console_read_wait(char *buf, size_t size)
{
    size_t n = 0;

    while (n == 0) {
        while (!sclp_input_pending)
            wait_for_ext();
        n = console_read(buf, size);
    }
    return n;
}
