/* shared.h: a secure guest's host interface: UV calls, Set Shared Access, zuv's virtio-like queues (shared.c). */
#ifndef ZUV_SHARED_H
#define ZUV_SHARED_H

#include "runtime.h"

/* Only images that name shared.c in runtime_extra (guest.toml) link these; they need the Ultravisor (a
 * secure guest) and zuv's DIAGNOSE 0x500 devices, so qemu-system-s390x -kernel cannot run them. */

#define UVC_QUERY               0x0001
#define UVC_SET_SHARED_ACCESS   0x1000

/* ---- UV control blocks (common header and the two calls every secure guest here makes) ---- */
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

/* UV CALL (UVC, RRF b9a4) with the control block at cb; returns the condition code. */
static inline int uvc(void *cb)
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

/* Set Shared Access on the 4 KiB page at page (a whole page of its own); panics unless rc is 0x0001. */
void share(const void *page);

/* ---- zuv's virtio-like queues (docs/hypervisor.md; emulator/hypervisor/virtio.py has the layout) ---- */
#define ZVQ_MAGIC               0x5a565131u     /* "ZVQ1" */
#define ZVQ_NUM                 8               /* ring entries the guest uses (the page holds 32) */
#define DESC_NEXT               1
#define DESC_WRITE              2               /* the device writes this buffer */
#define KVM_S390_VIRTIO_CCW_NOTIFY 3            /* DIAG 0x500 subcode (GR1) */

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

/* The queue page: header, descriptor table, avail ring, used ring. The page must be shared. */
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

/* DIAGNOSE 0x500 notify of device dev (1 console, 2 block, 3 mailbox) for queue q; returns GR2 (0 or -errno). */
long zvq_notify(uint64_t dev, struct zvq *q);
/* Zero the queue and write its magic and size. */
void zvq_init(struct zvq *q);
/* Post the chain starting at descriptor 0, notify dev and check the device used it: returns 0, the
 * device's -errno, or -1 when the used index did not catch up. The entry is q->used[idx % ZVQ_NUM] for
 * the avail_idx read before the call. */
long zvq_submit(uint64_t dev, struct zvq *q);

#endif
