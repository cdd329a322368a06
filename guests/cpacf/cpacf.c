/* cpacf.c: the message-security-assist instructions as Linux's s390 crypto drivers issue them: each one in a
 * "brc 1" loop that re-executes it after partial completion (CC 3). Prints STFLE's MSA bits, every query
 * mask, and the results of each function on fixed inputs (FIPS-197, RFC 4493 and NIST DRBG vectors, and
 * FNV-1a sums of longer outputs); make_expected.py computes the same with Python's cryptography.
 * Architecture-only: QEMU 7.2 TCG implements only a few of these functions. Exits 0. */
#include "runtime.h"

#define KMAC 0xb91e
#define PCKMO 0xb928
#define KMA 0xb929
#define KMF 0xb92a
#define KMO 0xb92b
#define PCC 0xb92c
#define KMCTR 0xb92d
#define KM 0xb92e
#define KMC 0xb92f
#define PRNO 0xb93c
#define KIMD 0xb93e
#define KLMD 0xb93f
#define DECRYPT 0x80

typedef unsigned long ul;

/* query (function 0) in the RRF form Linux uses for every opcode: registers 2, 4, 6 are ignored. PCKMO
 * leaves the condition code as it was, so it is made 0 first (Linux: "spm") for the brc 1 after it. */
#define QUERY(opc, mask)                                                                                     \
    do {                                                                                                     \
        register ul r0 asm("0") = 0;                                                                         \
        register ul r1 asm("1") = (ul)(mask);                                                                \
        asm volatile("cr 0,0\n0: .insn rrf,%[o] << 16,2,4,6,0\n brc 1,0b" : : [o] "i"(opc), "d"(r0), "a"(r1) \
                     : "cc", "memory");                                                                      \
    } while (0)

static int cc_out(void)
{
    int cc;

    asm volatile("ipm %0\n srl %0,28" : "=d"(cc));
    return cc;
}

/* KM, KMC, KMF, KMO: dst (R4), src (R2) and its length (R3); returns the condition code */
#define CIPHER(opc, fc, param, dst, src, len)                                                                \
    ({                                                                                                       \
        register ul r0 asm("0") = (fc);                                                                      \
        register ul r1 asm("1") = (ul)(param);                                                               \
        register ul r2 asm("2") = (ul)(src);                                                                 \
        register ul r3 asm("3") = (len);                                                                     \
        register ul r4 asm("4") = (ul)(dst);                                                                 \
        asm volatile("0: .insn rre,%[o] << 16,%[d],%[s]\n brc 1,0b"                                          \
                     : [s] "+a"(r2), [l] "+d"(r3), [d] "+a"(r4) : [o] "i"(opc), "d"(r0), "a"(r1)             \
                     : "cc", "memory");                                                                      \
        cc_out();                                                                                            \
    })

/* KIMD, KLMD, KMAC: the message (R2, R3) */
#define DIGEST(opc, fc, param, src, len)                                                                     \
    ({                                                                                                       \
        register ul r0 asm("0") = (fc);                                                                      \
        register ul r1 asm("1") = (ul)(param);                                                               \
        register ul r2 asm("2") = (ul)(src);                                                                 \
        register ul r3 asm("3") = (len);                                                                     \
        asm volatile("0: .insn rre,%[o] << 16,0,%[s]\n brc 1,0b"                                             \
                     : [s] "+a"(r2), [l] "+d"(r3) : [o] "i"(opc), "d"(r0), "a"(r1) : "cc", "memory");        \
        cc_out();                                                                                            \
    })

/* PCC, PCKMO: only the parameter block (the condition code is made 0 first: PCKMO does not set it) */
#define PARAM_ONLY(opc, fc, param)                                                                           \
    ({                                                                                                       \
        register ul r0 asm("0") = (fc);                                                                      \
        register ul r1 asm("1") = (ul)(param);                                                               \
        asm volatile("cr 0,0\n0: .insn rre,%[o] << 16,0,0\n brc 1,0b"                                     \
                     : : [o] "i"(opc), "d"(r0), "a"(r1) : "cc", "memory");                                   \
        cc_out();                                                                                            \
    })

static int kmctr(ul fc, void *param, void *dst, const void *src, ul len, void *ctr)
{
    register ul r0 asm("0") = fc;
    register ul r1 asm("1") = (ul)param;
    register ul r2 asm("2") = (ul)src;
    register ul r3 asm("3") = len;
    register ul r4 asm("4") = (ul)dst;
    register ul r6 asm("6") = (ul)ctr;

    asm volatile("0: .insn rrf,%[o] << 16,%[d],%[s],%[c],0\n brc 1,0b"
                 : [s] "+a"(r2), [l] "+d"(r3), [d] "+a"(r4), [c] "+a"(r6)
                 : [o] "i"(KMCTR), "d"(r0), "a"(r1)
                 : "cc", "memory");
    return cc_out();
}

static int kma(ul fc, void *param, void *dst, const void *src, ul len, const void *aad, ul aad_len)
{
    register ul r0 asm("0") = fc;
    register ul r1 asm("1") = (ul)param;
    register ul r2 asm("2") = (ul)src;
    register ul r3 asm("3") = len;
    register ul r4 asm("4") = (ul)dst;
    register ul r6 asm("6") = (ul)aad;
    register ul r7 asm("7") = aad_len;

    asm volatile("0: .insn rrf,%[o] << 16,%[d],%[s],%[a],0\n brc 1,0b"
                 : [s] "+a"(r2), [l] "+d"(r3), [d] "+a"(r4), [a] "+a"(r6), [al] "+d"(r7)
                 : [o] "i"(KMA), "d"(r0), "a"(r1)
                 : "cc", "memory");
    return cc_out();
}

/* PRNO: first operand (R2, R3: generated bytes, or TRNG raw), second (R4, R5: seed, or TRNG conditioned) */
static int prno(ul fc, void *param, void *out, ul out_len, void *in, ul in_len)
{
    register ul r0 asm("0") = fc;
    register ul r1 asm("1") = (ul)param;
    register ul r2 asm("2") = (ul)out;
    register ul r3 asm("3") = out_len;
    register ul r4 asm("4") = (ul)in;
    register ul r5 asm("5") = in_len;

    asm volatile("0: .insn rre,%[o] << 16,%[a],%[b]\n brc 1,0b"
                 : [a] "+a"(r2), [al] "+d"(r3), [b] "+a"(r4), [bl] "+d"(r5)
                 : [o] "i"(PRNO), "d"(r0), "a"(r1)
                 : "cc", "memory");
    return cc_out();
}

static void hex(const char *what, const uint8_t *p, unsigned n)
{
    printf("%s: ", what);
    for (unsigned i = 0; i < n; i++)
        printf("%02x", p[i]);
    printf("\n");
}

static uint32_t fnv(const uint8_t *p, ul n)
{
    uint32_t h = 2166136261u;

    for (ul i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/* byte i of pattern seed: what make_expected.py's pattern() gives */
static void pattern(uint8_t *p, ul n, unsigned seed)
{
    for (ul i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 7 + seed + (i >> 8));
}

#define BIG (200 * 1024) /* more than one execution's share (64 KiB): several CC 3 completions */
static uint8_t src[BIG] ALIGNED(4096), dst[BIG] ALIGNED(4096), ctr[BIG] ALIGNED(4096);
static uint8_t pb[512] ALIGNED(8);

static int stfle_bit(const uint64_t *fl, unsigned bit)
{
    return (int)(fl[bit / 64] >> (63 - bit % 64) & 1);
}

static void facilities_and_queries(void)
{
    static const struct {
        const char *name;
        unsigned opc;
    } ops[] = {{"KMAC", KMAC}, {"KM", KM}, {"KMC", KMC}, {"KIMD", KIMD}, {"KLMD", KLMD}, {"PCKMO", PCKMO},
               {"KMF", KMF}, {"KMO", KMO}, {"PCC", PCC}, {"KMCTR", KMCTR}, {"PRNO", PRNO}, {"KMA", KMA}};
    uint64_t fl[4] = {0};
    register ul r0 asm("0") = 3;
    uint8_t mask[16];

    asm volatile("stfle %0" : "=Q"(*(uint64_t(*)[4])fl), "+d"(r0) : : "cc", "memory");
    printf("stfle msa: 17=%d 76=%d 77=%d 57=%d 146=%d 155=%d\n", stfle_bit(fl, 17), stfle_bit(fl, 76),
           stfle_bit(fl, 77), stfle_bit(fl, 57), stfle_bit(fl, 146), stfle_bit(fl, 155));
    for (unsigned i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        char what[16];

        memset(mask, 0xee, sizeof(mask));
        switch (ops[i].opc) { /* the opcode must be a constant in the instruction */
        case KMAC: QUERY(KMAC, mask); break;
        case KM: QUERY(KM, mask); break;
        case KMC: QUERY(KMC, mask); break;
        case KIMD: QUERY(KIMD, mask); break;
        case KLMD: QUERY(KLMD, mask); break;
        case PCKMO: QUERY(PCKMO, mask); break;
        case KMF: QUERY(KMF, mask); break;
        case KMO: QUERY(KMO, mask); break;
        case PCC: QUERY(PCC, mask); break;
        case KMCTR: QUERY(KMCTR, mask); break;
        case PRNO: QUERY(PRNO, mask); break;
        case KMA: QUERY(KMA, mask); break;
        }
        snprintf(what, sizeof(what), "query %s", ops[i].name);
        hex(what, mask, 16);
    }
}

static void ciphers(void)
{
    static const uint8_t fips197_key[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    static const uint8_t fips197_pt[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                           0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
    int cc;

    memcpy(pb, fips197_key, 16);
    cc = CIPHER(KM, 18, pb, dst, fips197_pt, 16);
    printf("km aes-128 fips-197 cc=%d ", cc);
    hex("ct", dst, 16);

    /* AES-256 ECB over BIG bytes and back */
    pattern(src, BIG, 1);
    pattern(pb, 32, 2);
    cc = CIPHER(KM, 20, pb, dst, src, BIG);
    printf("km aes-256 %u bytes cc=%d fnv=%08x\n", BIG, cc, fnv(dst, BIG));
    cc = CIPHER(KM, 20 | DECRYPT, pb, dst, dst, BIG);
    printf("km aes-256 decrypt in place cc=%d round trip %s\n", cc, memcmp(dst, src, BIG) ? "differs" : "ok");

    /* CBC: chaining value then key; the chaining value left behind is the last ciphertext block */
    pattern(pb, 16 + 32, 3);
    cc = CIPHER(KMC, 20, pb, dst, src, BIG);
    printf("kmc aes-256 cbc cc=%d fnv=%08x ", cc, fnv(dst, BIG));
    hex("icv", pb, 16);

    /* TDEA-192 CBC and DEA ECB */
    pattern(pb, 8 + 24, 4);
    cc = CIPHER(KMC, 3, pb, dst, src, 4096);
    printf("kmc tdea-192 cbc cc=%d fnv=%08x\n", cc, fnv(dst, 4096));
    pattern(pb, 8, 5);
    cc = CIPHER(KM, 1, pb, dst, src, 4096);
    printf("km dea cc=%d fnv=%08x\n", cc, fnv(dst, 4096));

    /* CTR: the counter blocks are the program's (a 128-bit big-endian count from a pattern) */
    pattern(pb, 16, 6);
    pattern(ctr, 16, 7);
    for (ul off = 16; off < BIG; off += 16) {
        memcpy(ctr + off, ctr + off - 16, 16);
        for (int i = 15; i >= 0 && ++ctr[off + i] == 0; i--)
            ;
    }
    cc = kmctr(18, pb, dst, src, BIG, ctr);
    printf("kmctr aes-128 cc=%d fnv=%08x\n", cc, fnv(dst, BIG));

    /* CFB with 1-byte and 16-byte feedback (LCFB in GR0 bits 32-39), OFB */
    pattern(pb, 16 + 24, 8);
    cc = CIPHER(KMF, 1ul << 24 | 19, pb, dst, src, 1000);
    printf("kmf aes-192 cfb-8 cc=%d fnv=%08x\n", cc, fnv(dst, 1000));
    pattern(pb, 16 + 24, 8);
    cc = CIPHER(KMF, 16ul << 24 | 19, pb, dst, src, 4096);
    printf("kmf aes-192 cfb-128 cc=%d fnv=%08x\n", cc, fnv(dst, 4096));
    pattern(pb, 16 + 16, 9);
    cc = CIPHER(KMO, 18, pb, dst, src, 4096);
    printf("kmo aes-128 ofb cc=%d fnv=%08x\n", cc, fnv(dst, 4096));
}

static void xts_gcm_cmac(void)
{
    uint8_t xts[16];
    int cc;

    /* XTS as xts-aes-s390: PCC makes the XTS parameter from the second key and the tweak, KM runs */
    memset(pb, 0, sizeof(pb));
    pattern(pb, 32 + 16, 10); /* key 2, tweak; block sequential number 0, bit index 0 */
    cc = PARAM_ONLY(PCC, 52, pb);
    memcpy(xts, pb + 32 + 48, 16);
    printf("pcc xts-aes-256 cc=%d ", cc);
    hex("xts parameter", xts, 16);
    pattern(pb, 32, 11);
    memcpy(pb + 32, xts, 16);
    cc = CIPHER(KM, 52, pb, dst, src, 4096);
    printf("km xts-aes-256 cc=%d fnv=%08x\n", cc, fnv(dst, 4096));

    /* GCM as gcm-aes-s390: zeroed block, CV 1, J0 = IV || 1, lengths in bits, LAAD and LPC at once */
    memset(pb, 0, sizeof(pb));
    pb[15] = 1;
    pb[55] = 20 * 8;
    pb[62] = (100 * 8) >> 8;
    pb[63] = (100 * 8) & 0xff;
    pattern(pb + 64, 12, 12);
    pb[79] = 1;
    pattern(pb + 80, 32, 13);
    cc = kma(20 | 0x300, pb, dst, src, 100, src + 1000, 20);
    printf("kma gcm-aes-256 cc=%d ct fnv=%08x ", cc, fnv(dst, 100));
    hex("tag", pb + 16, 16);

    /* CMAC, RFC 4493 example 2: KMAC over the blocks before the last (none), PCC over the last */
    static const uint8_t k[16] = {0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6,
                                  0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c};
    static const uint8_t m[16] = {0x6b, 0xc1, 0xbe, 0xe2, 0x2e, 0x40, 0x9f, 0x96,
                                  0xe9, 0x3d, 0x7e, 0x11, 0x73, 0x93, 0x17, 0x2a};
    memset(pb, 0, sizeof(pb));
    pb[0] = 128;
    memcpy(pb + 1, m, 16);
    memcpy(pb + 33, k, 16);
    cc = PARAM_ONLY(PCC, 18, pb);
    printf("pcc cmac aes-128 rfc4493 cc=%d ", cc);
    hex("mac", pb + 17, 16);

    /* a longer CMAC: KMAC over 4080 bytes, then PCC over the last 15 */
    memset(pb, 0, sizeof(pb));
    pattern(pb + 16, 16, 14);
    cc = DIGEST(KMAC, 18, pb, src, 4080);
    memcpy(pb + 33, pb + 16, 16); /* PCC's block: ML, message, ICV (KMAC's chaining value), key */
    memcpy(pb + 17, pb, 16);
    pb[0] = 15 * 8;
    memset(pb + 1, 0, 16);
    memcpy(pb + 1, src + 4080, 15);
    cc |= PARAM_ONLY(PCC, 18, pb);
    printf("kmac+pcc cmac aes-128 4095 bytes cc=%d ", cc);
    hex("mac", pb + 17, 16);
}

static void digests(void)
{
    static const uint8_t iv1[20] = {0x67, 0x45, 0x23, 0x01, 0xef, 0xcd, 0xab, 0x89, 0x98, 0xba,
                                    0xdc, 0xfe, 0x10, 0x32, 0x54, 0x76, 0xc3, 0xd2, 0xe1, 0xf0};
    static const uint32_t iv256[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                      0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    static const uint64_t iv512[8] = {0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b,
                                      0xa54ff53a5f1d36f1, 0x510e527fade682d1, 0x9b05688c2b3e6c1f,
                                      0x1f83d9abfb41bd6b, 0x5be0cd19137e2179};
    static const struct {
        const char *name;
        unsigned fc, block, state, mbl;
        const void *iv;
    } algs[] = {{"sha-1", 1, 64, 20, 8, iv1},
                {"sha-256", 2, 64, 32, 8, iv256},
                {"sha-512", 3, 128, 64, 16, iv512}};
    static const ul lengths[] = {3, BIG - 5};

    for (unsigned a = 0; a < 3; a++) {
        for (unsigned l = 0; l < 2; l++) {
            const uint8_t *msg = l ? src : (const uint8_t *)"abc";
            ul n = lengths[l], whole = n - n % algs[a].block;
            char what[40];
            int cc;

            /* sha_common.c: KIMD over the whole blocks, KLMD over the rest with the bit length */
            memset(pb, 0, sizeof(pb));
            memcpy(pb, algs[a].iv, algs[a].state);
            cc = DIGEST(KIMD, algs[a].fc, pb, msg, whole);
            for (unsigned i = 0; i < 8; i++)
                pb[algs[a].state + algs[a].mbl - 1 - i] = (uint8_t)((n * 8) >> (8 * i));
            cc |= DIGEST(KLMD, algs[a].fc, pb, msg + whole, n - whole);
            snprintf(what, sizeof(what), "%s %lu bytes cc=%d", algs[a].name, n, cc);
            hex(what, pb, algs[a].state);
        }
    }

    /* GHASH: ICV 0, H from a pattern */
    memset(pb, 0, 16);
    pattern(pb + 16, 16, 15);
    DIGEST(KIMD, 65, pb, src, 256);
    hex("kimd ghash 256 bytes", pb, 16);
}

static void protected_keys(void)
{
    uint8_t clear_ct[64], prot[64];
    int cc, left;

    /* PCKMO: the clear AES-256 key becomes a protected key, then the wrapping-key verification pattern */
    pattern(pb, 32, 16);
    memset(pb + 32, 0, 32);
    CIPHER(KM, 20, pb, clear_ct, src, 64);
    PARAM_ONLY(PCKMO, 20, pb);
    memcpy(prot, pb, 64);
    pattern(dst, 32, 16);
    left = !memcmp(prot, dst, 32);
    printf("pckmo aes-256: clear key left in the block %s\n", left ? "yes" : "no");
    cc = CIPHER(KM, 28, pb, dst, src, 64);
    printf("km encrypted-aes-256 cc=%d same ciphertext as the clear key %s\n", cc,
           memcmp(dst, clear_ct, 64) ? "no" : "yes");
    pb[40] ^= 1; /* another wrapping key's pattern */
    memset(dst, 0, 64);
    cc = CIPHER(KM, 28, pb, dst, src, 64);
    printf("km encrypted-aes-256 with a wrong pattern cc=%d output untouched %s\n", cc,
           dst[0] | dst[63] ? "no" : "yes");
}

static void random_numbers(void)
{
    static const uint8_t seed[48] = {0x6b, 0x50, 0xa7, 0xd8, 0xf8, 0xa5, 0x5d, 0x7a, 0x3d, 0xf8, 0xbb, 0x40,
                                     0xbc, 0xc3, 0xb7, 0x22, 0xd8, 0x70, 0x8d, 0xe6, 0x7f, 0xda, 0x01, 0x0b,
                                     0x03, 0xc4, 0xc8, 0x4d, 0x72, 0x09, 0x6f, 0x8c, 0x3e, 0xc6, 0x49, 0xcc,
                                     0x62, 0x56, 0xd9, 0xfa, 0x31, 0xdb, 0x7a, 0x29, 0x04, 0xaa, 0xf0, 0x25};
    ul nonzero_raw = 0, nonzero_cond = 0;
    int cc;

    /* prng.c's self test: NIST Hash_DRBG SHA-512 count 0, seed then two generates of 256 bytes */
    memset(pb, 0, 240);
    cc = prno(0x83, pb, 0, 0, (void *)seed, sizeof(seed));
    cc |= prno(3, pb, dst, 256, 0, 0);
    cc |= prno(3, pb, dst, 256, 0, 0);
    printf("prno sha512-drng cc=%d ", cc);
    hex("second 256 bytes start", dst, 32);

    memset(dst, 0, 512);
    cc = prno(114, pb, dst, 256, dst + 256, 256);
    for (unsigned i = 0; i < 256; i++) {
        nonzero_raw += dst[i] != 0;
        nonzero_cond += dst[256 + i] != 0;
    }
    printf("prno trng cc=%d raw %s conditioned %s\n", cc, nonzero_raw > 200 ? "filled" : "empty",
           nonzero_cond > 200 ? "filled" : "empty");
}

static void bad_length(void *arg)
{
    (void)arg;
    CIPHER(KM, 18, pb, dst, src, 15);
}

int main(const char *cmdline)
{
    struct pgm_info info;

    (void)cmdline;
    facilities_and_queries();
    ciphers();
    xts_gcm_cmac();
    digests();
    protected_keys();
    random_numbers();
    memset(&info, 0, sizeof(info));
    if (pgm_catch(bad_length, 0, &info))
        printf("km length 15: code=0x%04x ilc=%u\n", info.code, info.ilc);
    else
        printf("km length 15: no interruption\n");
    return 0;
}
