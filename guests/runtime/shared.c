/* shared.c: pages shared with the host (Set Shared Access) and the virtio-like queues that live in them. */
#include "shared.h"

void share(const void *page)
{
    struct uv_cb_share cb;

    memset(&cb, 0, sizeof(cb));
    cb.h.len = sizeof(cb);
    cb.h.cmd = UVC_SET_SHARED_ACCESS;
    cb.paddr = (uint64_t)page;
    if (uvc(&cb) != 0 || cb.h.rc != 1)
        panic("Set Shared Access of %p failed: rc %#x\n", page, cb.h.rc);
}

long zvq_notify(uint64_t dev, struct zvq *q)
{
    register uint64_t r1 asm("1") = KVM_S390_VIRTIO_CCW_NOTIFY;
    register uint64_t r2 asm("2") = dev;
    register uint64_t r3 asm("3") = 0;
    register uint64_t r4 asm("4") = (uint64_t)q;

    asm volatile("diag %%r2,%%r4,0x500" : "+d"(r2) : "d"(r1), "d"(r3), "d"(r4) : "memory", "cc");
    return (long)r2;
}

void zvq_init(struct zvq *q)
{
    memset(q, 0, sizeof(*q));
    q->magic = ZVQ_MAGIC;
    q->num = ZVQ_NUM;
}

long zvq_submit(uint64_t dev, struct zvq *q)
{
    uint16_t idx = q->avail_idx;
    long rc;

    q->avail[idx % ZVQ_NUM] = 0;
    asm volatile("bcr 14,0" : : : "memory");    /* descriptors before the index the device reads */
    q->avail_idx = (uint16_t)(idx + 1);
    rc = zvq_notify(dev, q);
    if (rc == 0 && q->used_idx != q->avail_idx)
        rc = -1;
    return rc;
}
