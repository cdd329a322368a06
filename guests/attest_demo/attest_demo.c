/*
 * attest_demo.c: a secure guest with an attestation agent. It asks the relying party for a challenge
 * through the host (a virtio-like mailbox, device 3, in pages shared with Set Shared Access), performs
 * the attestation with the Ultravisor (zuv's UVC 0x1F20: the architected measurement plus signed
 * evidence), sends the result back the same way, and on success receives an add-secret request bound to
 * this image and this guest instance. It adds it (Add Secret), finds it (List Secrets), retrieves the
 * disk key (Retrieve Secret), locks the store and decrypts the data blob it carries encrypted at rest
 * (AES-256-GCM, blob.h).
 *
 * The host in between is untrusted: it relays bytes. The request, the evidence and the secret are
 * protected end to end (host keys, measurement key, signatures, key slots).
 *
 * Console lines the demo runner (emulator/attest/demo.py) reads: "disk unlocked: ..." on success,
 * "attestation refused: ..." when the verifier said no. Exit: 0 unlocked, 3 refused, 1 other failure.
 */
#include "shared.h"
#include "blob.h"

#define UVC_ATTEST              0x1020
#define UVC_ADD_SECRET          0x1031
#define UVC_LIST_SECRETS        0x1033
#define UVC_LOCK_SECRETS        0x1034
#define UVC_RETR_SECRET         0x1035
#define UVC_ATTEST_EVIDENCE     0x1f20      /* zuv: measurement and signed evidence */
#define DEV_MAILBOX             3
#define MSG_MAGIC               0x5a415454u /* "ZATT" */
#define MSG_CHALLENGE           1
#define MSG_EVIDENCE            2
#define AGENT_ID                "zuv attest_demo agent v1"

struct uv_cb_attest {
    struct uv_cb_header h;      /* 0x000 */
    uint64_t reserved08[2];     /* 0x008 */
    uint64_t arcb_addr;         /* 0x018 */
    uint64_t cont_token;        /* 0x020 */
    uint8_t reserved28[6];      /* 0x028 */
    uint16_t user_data_len;     /* 0x02e */
    uint8_t user_data[256];     /* 0x030 */
    uint32_t reserved130[3];    /* 0x130 */
    uint32_t meas_len;          /* 0x13c */
    uint64_t meas_addr;         /* 0x140 */
    uint8_t config_uid[16];     /* 0x148 */
    uint32_t reserved158;       /* 0x158 */
    uint32_t add_data_len;      /* 0x15c */
    uint64_t add_data_addr;     /* 0x160 */
    uint64_t evidence_addr;     /* 0x168: zuv 0x1F20 only (reserved in 0x1020) */
    uint32_t evidence_len;      /* 0x170 */
    uint32_t evidence_written;  /* 0x174 */
    uint64_t reserved178[2];    /* 0x178 */
} __attribute__((packed, aligned(8)));

struct uv_cb_guest_addr {
    struct uv_cb_header h;
    uint64_t reserved08[3];
    uint64_t addr;              /* 0x20 */
    uint64_t reserved28[4];
} __attribute__((packed, aligned(8)));

struct uv_cb_list_secrets {
    struct uv_cb_header h;
    uint64_t reserved08[2];
    uint8_t reserved18[6];
    uint16_t start_idx;         /* 0x1e */
    uint64_t list_addr;         /* 0x20 */
    uint64_t reserved28[4];
} __attribute__((packed, aligned(8)));

struct uv_cb_retr_secr {
    struct uv_cb_header h;
    uint64_t reserved08[2];
    uint16_t secret_idx;        /* 0x18 */
    uint16_t reserved1a;
    uint32_t buf_size;          /* 0x1c */
    uint64_t buf_addr;          /* 0x20 */
    uint64_t reserved28[4];
} __attribute__((packed, aligned(8)));

struct uv_cb_nodata {
    struct uv_cb_header h;
    uint64_t reserved08[2];
    uint64_t handle;
    uint64_t reserved20[4];
} __attribute__((packed, aligned(8)));

_Static_assert(sizeof(struct uv_cb_attest) == 0x188, "uv_cb_attest");
_Static_assert(sizeof(struct uv_cb_guest_addr) == 0x48, "uv_cb_guest_addr");
_Static_assert(sizeof(struct uv_cb_list_secrets) == 0x48, "uv_cb_list_secrets");
_Static_assert(sizeof(struct uv_cb_retr_secr) == 0x48, "uv_cb_retr_secr");
_Static_assert(sizeof(struct uv_cb_nodata) == 0x40, "uv_cb_nodata");

/* pvattest exchange file v1 (spec 9.6): five {size, offset} entries after a 24-byte head. */
struct xchg_entry {
    uint32_t size;
    uint32_t offset;
} __attribute__((packed));

struct xchg_hdr {
    uint8_t magic[8];           /* "pvattest" */
    uint32_t version;           /* 0x0100 */
    uint32_t size;
    uint64_t reserved;
    struct xchg_entry arcb, meas, add, user, cuid;
} __attribute__((packed));

_Static_assert(sizeof(struct xchg_hdr) == 0x40, "exchange header");

/* Shared with the host: the mailbox queue, the outgoing and the reply buffer. */
static union { struct zvq q; uint8_t page[4096]; } mbox_q ALIGNED(4096);
static uint8_t mbox_out[16384] ALIGNED(4096);
static uint8_t mbox_in[8192] ALIGNED(4096);
/* Private (secure) storage: the request, results, the add-secret request, the secret. */
static uint8_t arcb[4096] ALIGNED(8);
static uint8_t measurement[64] ALIGNED(8);
static uint8_t additional[1024] ALIGNED(8);
static uint8_t evidence[12288] ALIGNED(4096);
static uint8_t asrcb[8192] ALIGNED(8);
static uint8_t secret_list[4096] ALIGNED(4096);
static uint8_t disk_key[32] ALIGNED(8);
static uint8_t plain[sizeof(BLOB_CT) + 1];

static int installed(const struct uv_cb_qui *q, int bit)
{
    return (int)(q->inst_calls[bit / 64] >> (63 - bit % 64) & 1);
}

/* One message to the host and its reply: returns the reply length, or -1. */
static long mailbox(uint32_t type, uint32_t len)
{
    struct zvq *q = &mbox_q.q;
    uint32_t head[3] = { MSG_MAGIC, type, len };
    uint16_t idx = q->avail_idx;

    memcpy(mbox_out, head, sizeof(head));
    q->desc[0] = (struct zvq_desc){ (uint64_t)mbox_out, (uint32_t)(sizeof(head) + len), DESC_NEXT, 1 };
    q->desc[1] = (struct zvq_desc){ (uint64_t)mbox_in, sizeof(mbox_in), DESC_WRITE, 0 };
    if (zvq_submit(DEV_MAILBOX, q) != 0)
        return -1;
    return (long)q->used[idx % ZVQ_NUM].len;
}

/* ---- AES-256 (encryption direction) and GCM decryption, FIPS 197 / SP 800-38D ---- */
static const uint8_t sbox[256] = {
    0x63, 0x7c, 0x77, 0x7b, 0xf2, 0x6b, 0x6f, 0xc5, 0x30, 0x01, 0x67, 0x2b, 0xfe, 0xd7, 0xab, 0x76,
    0xca, 0x82, 0xc9, 0x7d, 0xfa, 0x59, 0x47, 0xf0, 0xad, 0xd4, 0xa2, 0xaf, 0x9c, 0xa4, 0x72, 0xc0,
    0xb7, 0xfd, 0x93, 0x26, 0x36, 0x3f, 0xf7, 0xcc, 0x34, 0xa5, 0xe5, 0xf1, 0x71, 0xd8, 0x31, 0x15,
    0x04, 0xc7, 0x23, 0xc3, 0x18, 0x96, 0x05, 0x9a, 0x07, 0x12, 0x80, 0xe2, 0xeb, 0x27, 0xb2, 0x75,
    0x09, 0x83, 0x2c, 0x1a, 0x1b, 0x6e, 0x5a, 0xa0, 0x52, 0x3b, 0xd6, 0xb3, 0x29, 0xe3, 0x2f, 0x84,
    0x53, 0xd1, 0x00, 0xed, 0x20, 0xfc, 0xb1, 0x5b, 0x6a, 0xcb, 0xbe, 0x39, 0x4a, 0x4c, 0x58, 0xcf,
    0xd0, 0xef, 0xaa, 0xfb, 0x43, 0x4d, 0x33, 0x85, 0x45, 0xf9, 0x02, 0x7f, 0x50, 0x3c, 0x9f, 0xa8,
    0x51, 0xa3, 0x40, 0x8f, 0x92, 0x9d, 0x38, 0xf5, 0xbc, 0xb6, 0xda, 0x21, 0x10, 0xff, 0xf3, 0xd2,
    0xcd, 0x0c, 0x13, 0xec, 0x5f, 0x97, 0x44, 0x17, 0xc4, 0xa7, 0x7e, 0x3d, 0x64, 0x5d, 0x19, 0x73,
    0x60, 0x81, 0x4f, 0xdc, 0x22, 0x2a, 0x90, 0x88, 0x46, 0xee, 0xb8, 0x14, 0xde, 0x5e, 0x0b, 0xdb,
    0xe0, 0x32, 0x3a, 0x0a, 0x49, 0x06, 0x24, 0x5c, 0xc2, 0xd3, 0xac, 0x62, 0x91, 0x95, 0xe4, 0x79,
    0xe7, 0xc8, 0x37, 0x6d, 0x8d, 0xd5, 0x4e, 0xa9, 0x6c, 0x56, 0xf4, 0xea, 0x65, 0x7a, 0xae, 0x08,
    0xba, 0x78, 0x25, 0x2e, 0x1c, 0xa6, 0xb4, 0xc6, 0xe8, 0xdd, 0x74, 0x1f, 0x4b, 0xbd, 0x8b, 0x8a,
    0x70, 0x3e, 0xb5, 0x66, 0x48, 0x03, 0xf6, 0x0e, 0x61, 0x35, 0x57, 0xb9, 0x86, 0xc1, 0x1d, 0x9e,
    0xe1, 0xf8, 0x98, 0x11, 0x69, 0xd9, 0x8e, 0x94, 0x9b, 0x1e, 0x87, 0xe9, 0xce, 0x55, 0x28, 0xdf,
    0x8c, 0xa1, 0x89, 0x0d, 0xbf, 0xe6, 0x42, 0x68, 0x41, 0x99, 0x2d, 0x0f, 0xb0, 0x54, 0xbb, 0x16,
};

static uint8_t xtime(uint8_t x)
{
    return (uint8_t)((x << 1) ^ ((x >> 7) * 0x1b));
}

static void aes256_expand(const uint8_t key[32], uint8_t rk[240])
{
    uint8_t rcon = 1, t[4], u;
    int i, k;

    memcpy(rk, key, 32);
    for (i = 8; i < 60; i++) {
        memcpy(t, rk + 4 * (i - 1), 4);
        if (i % 8 == 0) {
            u = t[0];
            t[0] = (uint8_t)(sbox[t[1]] ^ rcon);
            t[1] = sbox[t[2]];
            t[2] = sbox[t[3]];
            t[3] = sbox[u];
            rcon = xtime(rcon);
        } else if (i % 8 == 4) {
            for (k = 0; k < 4; k++)
                t[k] = sbox[t[k]];
        }
        for (k = 0; k < 4; k++)
            rk[4 * i + k] = (uint8_t)(rk[4 * (i - 8) + k] ^ t[k]);
    }
}

static void aes256_encrypt(const uint8_t rk[240], const uint8_t in[16], uint8_t out[16])
{
    uint8_t s[16], t[16], a0, a1, a2, a3, e;
    int i, r, c, round;

    for (i = 0; i < 16; i++)
        s[i] = (uint8_t)(in[i] ^ rk[i]);
    for (round = 1; round <= 14; round++) {
        for (c = 0; c < 4; c++)         /* SubBytes and ShiftRows (state is column-major) */
            for (r = 0; r < 4; r++)
                t[r + 4 * c] = sbox[s[r + 4 * ((c + r) % 4)]];
        if (round != 14) {
            for (c = 0; c < 4; c++) {   /* MixColumns */
                a0 = t[4 * c];
                a1 = t[4 * c + 1];
                a2 = t[4 * c + 2];
                a3 = t[4 * c + 3];
                e = (uint8_t)(a0 ^ a1 ^ a2 ^ a3);
                t[4 * c] = (uint8_t)(a0 ^ e ^ xtime((uint8_t)(a0 ^ a1)));
                t[4 * c + 1] = (uint8_t)(a1 ^ e ^ xtime((uint8_t)(a1 ^ a2)));
                t[4 * c + 2] = (uint8_t)(a2 ^ e ^ xtime((uint8_t)(a2 ^ a3)));
                t[4 * c + 3] = (uint8_t)(a3 ^ e ^ xtime((uint8_t)(a3 ^ a0)));
            }
        }
        for (i = 0; i < 16; i++)
            s[i] = (uint8_t)(t[i] ^ rk[16 * round + i]);
    }
    memcpy(out, s, 16);
}

static void gf128_mul(uint8_t x[16], const uint8_t h[16])
{
    uint8_t z[16], v[16];
    int i, j, lsb;

    memset(z, 0, 16);
    memcpy(v, h, 16);
    for (i = 0; i < 128; i++) {
        if (x[i / 8] >> (7 - i % 8) & 1)
            for (j = 0; j < 16; j++)
                z[j] ^= v[j];
        lsb = v[15] & 1;
        for (j = 15; j > 0; j--)
            v[j] = (uint8_t)((v[j] >> 1) | (v[j - 1] << 7));
        v[0] >>= 1;
        if (lsb)
            v[0] ^= 0xe1;
    }
    memcpy(x, z, 16);
}

/* AES-256-GCM decryption with a 96-bit IV and no AAD; returns 0 when the tag authenticates. */
static int aes256_gcm_open(const uint8_t key[32], const uint8_t iv[12], const uint8_t *ct, size_t n,
                           const uint8_t tag[16], uint8_t *out)
{
    static uint8_t rk[240];
    uint8_t h[16], j0[16], ctr[16], ks[16], s[16], len[16], diff = 0;
    uint64_t bits = (uint64_t)n * 8;
    size_t off, i, m;
    uint32_t c;

    aes256_expand(key, rk);
    memset(h, 0, 16);
    aes256_encrypt(rk, h, h);
    memcpy(j0, iv, 12);
    j0[12] = j0[13] = j0[14] = 0;
    j0[15] = 1;
    memset(s, 0, 16);
    for (off = 0; off < n; off += 16) {         /* GHASH over the ciphertext */
        m = n - off < 16 ? n - off : 16;
        for (i = 0; i < m; i++)
            s[i] ^= ct[off + i];
        gf128_mul(s, h);
    }
    memset(len, 0, 16);
    for (i = 0; i < 8; i++)
        len[15 - i] = (uint8_t)(bits >> (8 * i));
    for (i = 0; i < 16; i++)
        s[i] ^= len[i];
    gf128_mul(s, h);
    aes256_encrypt(rk, j0, ks);
    for (i = 0; i < 16; i++)
        diff |= (uint8_t)(ks[i] ^ s[i] ^ tag[i]);
    if (diff)
        return -1;
    memcpy(ctr, j0, 16);
    for (off = 0; off < n; off += 16) {         /* CTR from inc32(J0) */
        c = (uint32_t)ctr[12] << 24 | (uint32_t)ctr[13] << 16 | (uint32_t)ctr[14] << 8 | ctr[15];
        c++;
        ctr[12] = (uint8_t)(c >> 24);
        ctr[13] = (uint8_t)(c >> 16);
        ctr[14] = (uint8_t)(c >> 8);
        ctr[15] = (uint8_t)c;
        aes256_encrypt(rk, ctr, ks);
        m = n - off < 16 ? n - off : 16;
        for (i = 0; i < m; i++)
            out[off + i] = (uint8_t)(ct[off + i] ^ ks[i]);
    }
    return 0;
}

/* ---- the agent ---- */

static uint32_t put_entry(struct xchg_entry *e, uint32_t off, const void *data, uint32_t n)
{
    e->size = n;
    e->offset = n ? off : 0;
    if (n)
        memcpy(mbox_out + 12 + off, data, n);
    return off + n;
}

int main(const char *cmdline)
{
    static struct uv_cb_qui qui;
    static struct uv_cb_attest att;
    static struct uv_cb_guest_addr add;
    static struct uv_cb_list_secrets list;
    static struct uv_cb_retr_secr retr;
    static struct uv_cb_nodata lock;
    const struct xchg_hdr *rq;
    struct xchg_hdr *rs;
    uint32_t off, arcb_len, add_len, status, n, i;
    uint16_t count;
    long len;
    int found = -1;

    printf("attest_demo: a secure guest with an attestation agent (zuv)\n");
    memset(&qui, 0, sizeof(qui));
    qui.h.len = sizeof(qui);
    qui.h.cmd = UVC_QUERY;
    uvc(&qui);
    if (!installed(&qui, 28) || !installed(&qui, 63) || !installed(&qui, 29)) {
        printf("attest_demo: the Ultravisor offers no attestation/evidence/secret calls\n");
        return 1;
    }
    share(&mbox_q);
    for (i = 0; i < sizeof(mbox_out); i += 4096)
        share(mbox_out + i);
    for (i = 0; i < sizeof(mbox_in); i += 4096)
        share(mbox_in + i);
    zvq_init(&mbox_q.q);

    /* 1. a challenge: a pvattest request file (ARCB and the expected sizes) */
    len = mailbox(MSG_CHALLENGE, 0);
    memcpy(&status, mbox_in, 4);
    memcpy(&n, mbox_in + 4, 4);
    rq = (const struct xchg_hdr *)(mbox_in + 8);
    if (len < 8 + (long)sizeof(*rq) || status != 0 || memcmp(rq->magic, "pvattest", 8) != 0 ||
        rq->arcb.size == 0 || rq->arcb.size > sizeof(arcb) || rq->arcb.offset + rq->arcb.size > n ||
        rq->meas.size < 64 || rq->add.size > sizeof(additional)) {
        printf("attest_demo: no usable challenge from the host (length %ld, status %u)\n", len, status);
        return 1;
    }
    arcb_len = rq->arcb.size;
    add_len = rq->add.size;
    memcpy(arcb, mbox_in + 8 + rq->arcb.offset, arcb_len);  /* into secure storage before use */
    printf("attest_demo: challenge received: ARCB of %u bytes, %u bytes of additional data requested\n",
           arcb_len, add_len);

    /* 2. measure: the Ultravisor's HMAC and its signed statement */
    memset(&att, 0, sizeof(att));
    att.h.len = sizeof(att);
    att.h.cmd = UVC_ATTEST_EVIDENCE;
    att.arcb_addr = (uint64_t)arcb;
    att.user_data_len = sizeof(AGENT_ID) - 1;
    memcpy(att.user_data, AGENT_ID, sizeof(AGENT_ID) - 1);
    att.meas_len = sizeof(measurement);
    att.meas_addr = (uint64_t)measurement;
    att.add_data_len = add_len;
    att.add_data_addr = (uint64_t)additional;
    att.evidence_addr = (uint64_t)evidence;
    att.evidence_len = sizeof(evidence);
    if (uvc(&att) != 0 || att.h.rc != 1) {
        printf("attest_demo: Retrieve Attestation Measurement failed: rc %#x\n", att.h.rc);
        return 1;
    }
    printf("attest_demo: measured by the Ultravisor; evidence of %u bytes (ECDSA P-521 + ML-DSA-87)\n",
           att.evidence_written);

    /* 3. the response: a pvattest response file followed by the evidence */
    rs = (struct xchg_hdr *)(mbox_out + 12);
    memset(rs, 0, sizeof(*rs));
    memcpy(rs->magic, "pvattest", 8);
    rs->version = 0x0100;
    off = sizeof(*rs);
    off = put_entry(&rs->arcb, off, arcb, arcb_len);
    off = put_entry(&rs->meas, off, measurement, sizeof(measurement));
    off = put_entry(&rs->add, off, additional, add_len);
    off = put_entry(&rs->user, off, AGENT_ID, sizeof(AGENT_ID) - 1);
    off = put_entry(&rs->cuid, off, att.config_uid, 16);
    rs->size = off;
    if (12 + off + att.evidence_written > sizeof(mbox_out))
        panic("evidence does not fit the mailbox\n");
    memcpy(mbox_out + 12 + off, evidence, att.evidence_written);
    len = mailbox(MSG_EVIDENCE, off + att.evidence_written);
    memcpy(&status, mbox_in, 4);
    memcpy(&n, mbox_in + 4, 4);
    if (len < 8 || n + 8 > (uint32_t)len || n >= sizeof(asrcb)) {
        printf("attest_demo: no answer from the relying party\n");
        return 1;
    }
    if (status != 0) {
        mbox_in[8 + n] = 0;
        printf("attestation refused: %s\n", (const char *)mbox_in + 8);
        printf("attest_demo: no key, the disk stays locked\n");
        return 3;
    }
    memcpy(asrcb, mbox_in + 8, n);

    /* 4. the secret: add, find, retrieve, lock */
    memset(&add, 0, sizeof(add));
    add.h.len = sizeof(add);
    add.h.cmd = UVC_ADD_SECRET;
    add.addr = (uint64_t)asrcb;
    if (uvc(&add) != 0 || add.h.rc != 1) {
        printf("attestation refused: the Ultravisor did not accept the secret (Add Secret rc %#x rrc %#x)\n",
               add.h.rc, add.h.rrc);
        return 3;
    }
    memset(&list, 0, sizeof(list));
    list.h.len = sizeof(list);
    list.h.cmd = UVC_LIST_SECRETS;
    list.list_addr = (uint64_t)secret_list;
    if (uvc(&list) > 1 || (list.h.rc != 1 && list.h.rc != 0x100))
        panic("List Secrets failed: rc %#x\n", list.h.rc);
    memcpy(&count, secret_list, 2);
    for (i = 0; i < count; i++) {
        const uint8_t *e = secret_list + 16 + 48 * i;
        if (memcmp(e + 16, DISK_KEY_ID, 32) == 0) {
            found = e[0] << 8 | e[1];
            break;
        }
    }
    if (found < 0)
        panic("the disk key is not in the secret store\n");
    memset(&retr, 0, sizeof(retr));
    retr.h.len = sizeof(retr);
    retr.h.cmd = UVC_RETR_SECRET;
    retr.secret_idx = (uint16_t)found;
    retr.buf_size = sizeof(disk_key);
    retr.buf_addr = (uint64_t)disk_key;
    if (uvc(&retr) != 0 || retr.h.rc != 1)
        panic("Retrieve Secret failed: rc %#x\n", retr.h.rc);
    memset(&lock, 0, sizeof(lock));
    lock.h.len = sizeof(lock);
    lock.h.cmd = UVC_LOCK_SECRETS;
    uvc(&lock);
    printf("attest_demo: disk key retrieved from the secret store (index %d); store locked (rc %#x)\n", found,
           lock.h.rc);

    /* 5. the data at rest */
    if (aes256_gcm_open(disk_key, BLOB_IV, BLOB_CT, sizeof(BLOB_CT), BLOB_TAG, plain) != 0) {
        printf("attest_demo: the blob does not authenticate with this key\n");
        return 1;
    }
    plain[sizeof(BLOB_CT)] = 0;
    printf("disk unlocked: %s\n", (const char *)plain);
    memset(disk_key, 0, sizeof(disk_key));
    return 0;
}
