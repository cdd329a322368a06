/* dat.c: five-level DAT (region-first to page tables): loads and stores through them, LRA, IPTE, DAT
 * protection, and the translation exceptions 0x10, 0x11, 0x38, 0x39, 0x3A, 0x3B, 0x12 with their TEIDs;
 * an invalid opcode at the start of a page after an invalid one, an EXECUTE of an untranslatable target, and
 * an instruction that crosses into an invalid page after others that run. */
#include "runtime.h"

/* Table entry bits. */
#define RTE_I           0x20ULL        /* region-table entry invalid */
#define RTE_TT_R1       0x0cULL        /* table type in a region-first table entry */
#define RTE_TT_R2       0x08ULL
#define RTE_TT_R3       0x04ULL
#define RTE_TL_FULL     0x03ULL        /* next table is full length (4 x 512 entries) */
#define STE_I           0x20ULL        /* segment-table entry invalid */
#define PTE_I           0x400ULL       /* page invalid */
#define PTE_P           0x200ULL       /* page protected */
#define ASCE_DT_R1      0x0cULL        /* designation type: region-first table */
#define ASCE_DT_R3      0x04ULL
#define ASCE_TL_FULL    0x03ULL

#define REGION_ENTRIES  2048
#define PAGE_ENTRIES    256
#define IDENTITY_MB     16             /* identity-mapped low storage: code, data, tables, lowcore */

typedef uint64_t region_table[REGION_ENTRIES] ALIGNED(4096);
typedef uint64_t page_table[PAGE_ENTRIES] ALIGNED(2048);

static region_table r1t, r2t_low, r3t_low, sgt_low, r2t_high, r3t_high, sgt_high;
static page_table pt_low[IDENTITY_MB], pt_high;
static uint64_t data0[512] ALIGNED(4096), data1[512] ALIGNED(4096);
static uint8_t code_page[4096] ALIGNED(4096), code_page2[4096] ALIGNED(4096);

/* The test window: RFX 2, RSX 0, RTX 0, SX 0: virtual 0x0040000000000000. */
#define VA_HIGH         0x0040000000000000ULL
#define VA_PAGE(n)      (VA_HIGH + (uint64_t)(n) * 4096)
#define VA_SEGMENT1     (VA_HIGH + (1ULL << 20))   /* segment-table entry 1: invalid */
#define VA_REGION3_1    (VA_HIGH + (1ULL << 31))   /* region-third entry 1: invalid */
#define VA_REGION2_1    (VA_HIGH + (1ULL << 42))   /* region-second entry 1: invalid */
#define VA_REGION1_3    (3ULL << 53)               /* region-first entry 3: invalid */
#define VA_REGION1_5    (5ULL << 53)               /* region-first entry 5: wrong table type */
#define VA_REGION1_512  (512ULL << 53)             /* beyond a region-first table of length 0 */
#define VA_ABOVE_2T     (1ULL << 42)               /* needs RSX: beyond a region-third ASCE */

static uint64_t asce_full, asce_r1_short, asce_r3;

static void build_tables(void)
{
    unsigned i, j;

    for (i = 0; i < REGION_ENTRIES; i++) {
        r1t[i] = RTE_I | RTE_TT_R1;
        r2t_low[i] = r2t_high[i] = RTE_I | RTE_TT_R2;
        r3t_low[i] = r3t_high[i] = RTE_I | RTE_TT_R3;
        sgt_low[i] = sgt_high[i] = STE_I;
    }
    /* Identity map of the first IDENTITY_MB MiB: r1t[0] -> r2t_low[0] -> r3t_low[0] -> sgt_low[0..15]. */
    r1t[0] = (uint64_t)r2t_low | RTE_TT_R1 | RTE_TL_FULL;
    r2t_low[0] = (uint64_t)r3t_low | RTE_TT_R2 | RTE_TL_FULL;
    r3t_low[0] = (uint64_t)sgt_low | RTE_TT_R3 | RTE_TL_FULL;
    for (i = 0; i < IDENTITY_MB; i++) {
        sgt_low[i] = (uint64_t)pt_low[i];
        for (j = 0; j < PAGE_ENTRIES; j++)
            pt_low[i][j] = ((uint64_t)i << 20) + ((uint64_t)j << 12);
    }
    /* The test window: r1t[2] -> r2t_high[0] -> r3t_high[0] -> sgt_high[0] -> pt_high. */
    r1t[2] = (uint64_t)r2t_high | RTE_TT_R1 | RTE_TL_FULL;
    r2t_high[0] = (uint64_t)r3t_high | RTE_TT_R2 | RTE_TL_FULL;
    r3t_high[0] = (uint64_t)sgt_high | RTE_TT_R3 | RTE_TL_FULL;
    sgt_high[0] = (uint64_t)pt_high;
    for (j = 0; j < PAGE_ENTRIES; j++)
        pt_high[j] = PTE_I;
    pt_high[0] = (uint64_t)data0;
    pt_high[1] = (uint64_t)data1;
    pt_high[2] = (uint64_t)data0;            /* an alias of page 0 */
    pt_high[3] = PTE_I;                      /* invalid page */
    pt_high[4] = (uint64_t)data1 | PTE_P;    /* read-only alias of page 1 */
    pt_high[5] = (uint64_t)data1;            /* invalidated later with IPTE */
    pt_high[6] = (uint64_t)code_page;        /* code */
    pt_high[7] = PTE_I;                      /* invalid page before more code */
    pt_high[8] = (uint64_t)code_page2;       /* code right after an invalid page */
    /* r1t[5]: a region-third table type where a region-second table is expected. */
    r1t[5] = (uint64_t)r3t_high | RTE_TT_R1 | RTE_TL_FULL;
    r2t_high[1] = RTE_I | RTE_TT_R2;

    asce_full = (uint64_t)r1t | ASCE_DT_R1 | ASCE_TL_FULL;
    asce_r1_short = (uint64_t)r1t | ASCE_DT_R1;           /* TL 0: region-first indexes 0-511 only */
    asce_r3 = (uint64_t)r3t_low | ASCE_DT_R3 | ASCE_TL_FULL;
    /* A wrong table type is only recognised in a valid entry: r2t reached through r1t[5] is r3t_high, whose
     * entries carry TT 01 in a table the machine reads as a region-second table. */
}

static void dat_on(void)
{
    uint8_t old;

    asm volatile("stosm %0,0x04" : "=Q"(old) : : "memory");
}

static void dat_off(void)
{
    uint8_t old;

    asm volatile("stnsm %0,0xfb" : "=Q"(old) : : "memory");
}

static uint64_t load(uint64_t va)
{
    uint64_t v;

    asm volatile("lg %0,0(%1)" : "=d"(v) : "a"(va) : "memory");
    return v;
}

static void store(uint64_t va, uint64_t v)
{
    asm volatile("stg %0,0(%1)" : : "d"(v), "a"(va) : "memory");
}

static int lra(uint64_t va, uint64_t *real)
{
    uint64_t r;
    int cc;

    asm volatile("lrag %[r],0(%[va])\n\tipm %[cc]\n\tsrl %[cc],28" : [cc] "=d"(cc), [r] "=d"(r) : [va] "a"(va) : "cc");
    *real = r;
    return cc;
}

static void ipte(uint64_t pto, uint64_t va)
{
    asm volatile("ipte %0,%1" : : "a"(pto), "a"(va) : "memory");
}

/* Faulting accesses, run under pgm_catch; insn is the faulting instruction's address. */
extern uint64_t t_load(uint64_t va);
extern void t_store(uint64_t va, uint64_t value);
extern const char t_load_insn[], t_store_insn[];
static uint64_t fault_va;
static void do_load(void *arg) { t_load(fault_va); }
static void do_store(void *arg) { t_store(fault_va, 0xdead); }
static void do_call(void *arg) { ((void (*)(void))fault_va)(); }
/* code_page2 + 0x10: "ex %r0,0(%r2)", its target the argument */
#define EX_INSN         (VA_PAGE(8) + 0x10)
static void do_exec(void *arg) { ((void (*)(uint64_t))EX_INSN)(fault_va); }
/* code_page2 + 0xff0: seven "nopr", then a 6-byte "brcl" from 0xffe that crosses into page 9 (invalid) */
#define CROSS_INSN      (VA_PAGE(8) + 0xffe)
static void do_cross(void *arg) { ((void (*)(void))(VA_PAGE(8) + 0xff0))(); }

/* Interruption codes that store a TEID: protection and the translation exceptions. */
static int stores_teid(unsigned code)
{
    return code == 0x04 || code == 0x10 || code == 0x11 || (code >= 0x38 && code <= 0x3b);
}

static void expect(const char *what, void (*fn)(void *), uint64_t va)
{
    uint64_t insn = fn == do_load ? (uint64_t)t_load_insn : fn == do_store ? (uint64_t)t_store_insn
                  : fn == do_exec ? EX_INSN : fn == do_cross ? CROSS_INSN : va;
    struct pgm_info info;
    const char *where;

    fault_va = va;
    memset(&info, 0, sizeof(info));
    if (!pgm_catch(fn, NULL, &info)) {
        printf("%-28s no interruption\n", what);
        return;
    }
    where = info.old_psw.addr == insn ? "at" : info.old_psw.addr == insn + info.ilc ? "after" : "other";
    printf("%-27s code=0x%04x ilc=%u psw=%-5s", what, info.code, info.ilc, where);
    if (stores_teid(info.code))
        printf(" teid=...%03lx teid address %s", info.teid & 0xfff,
               (info.teid & ~0xfffULL) == (va & ~0xfffULL) ? "= page" : "!= page");
    printf("\n");
}

int main(const char *cmdline)
{
    uint64_t real, cr1;
    int cc;

    printf("dat: region-first -> region-second -> region-third -> segment -> page tables\n");
    build_tables();
    data0[0] = 0x1111111111111111ULL;
    data1[0] = 0x2222222222222222ULL;
    /* code_page: "lghi %r2,77; br %r14" */
    code_page[0] = 0xa7; code_page[1] = 0x29; code_page[2] = 0x00; code_page[3] = 77;
    code_page[4] = 0x07; code_page[5] = 0xfe;
    /* code_page2: an invalid opcode (0x0000) at its first byte; "ex %r0,0(%r2); br %r14" at 0x10 */
    code_page2[0x10] = 0x44; code_page2[0x11] = 0x00; code_page2[0x12] = 0x20; code_page2[0x13] = 0x00;
    code_page2[0x14] = 0x07; code_page2[0x15] = 0xfe;
    for (int i = 0xff0; i < 0xffe; i += 2) {
        code_page2[i] = 0x07; code_page2[i + 1] = 0x00;
    }
    code_page2[0xffe] = 0xc0; code_page2[0xfff] = 0xf4;

    ctl_set(1, asce_full);
    asm volatile("ptlb" : : : "memory");
    dat_on();
    printf("dat on: %s\n", psw_mask() & PSW_MASK_DAT ? "yes" : "no");
    printf("load page 0: 0x%016lx\n", load(VA_PAGE(0)));
    printf("load page 1: 0x%016lx\n", load(VA_PAGE(1)));
    store(VA_PAGE(2) + 8, 0x3333333333333333ULL);
    printf("store via page 2, load via page 0: 0x%016lx\n", load(VA_PAGE(0) + 8));
    printf("load page 4 (protected): 0x%016lx\n", load(VA_PAGE(4)));
    printf("call code on page 6: returned %ld\n", ((long (*)(void))VA_PAGE(6))());
    cc = lra(VA_PAGE(1) + 0x123, &real);
    printf("lrag page 1+0x123: cc=%d real %s\n", cc, real == (uint64_t)data1 + 0x123 ? "= data1+0x123" : "wrong");
    cc = lra((uint64_t)&r1t[3], &real);
    printf("lrag identity-mapped address: cc=%d real %s\n", cc, real == (uint64_t)&r1t[3] ? "= virtual" : "wrong");

    printf("translation exceptions (fetch with LG, store with STG):\n");
    expect("page invalid, fetch", do_load, VA_PAGE(3));
    expect("page invalid, store", do_store, VA_PAGE(3) + 0x10);
    expect("page invalid, instruction", do_call, VA_PAGE(3));
    expect("segment invalid", do_load, VA_SEGMENT1);
    expect("region-third invalid", do_load, VA_REGION3_1);
    expect("region-second invalid", do_load, VA_REGION2_1);
    expect("region-first invalid", do_store, VA_REGION1_3);
    expect("region table type wrong", do_load, VA_REGION1_5);
    expect("DAT protection, store", do_store, VA_PAGE(4));
    expect("opcode 0 after invalid page", do_call, VA_PAGE(8));
    expect("EXECUTE target invalid", do_exec, VA_PAGE(7) + 0xff8);
    expect("insn crossing into invalid", do_cross, VA_PAGE(9));

    /* IPTE: page 5 is used (so it may be in the TLB), then invalidated. */
    printf("load page 5: 0x%016lx\n", load(VA_PAGE(5)));
    ipte((uint64_t)pt_high, VA_PAGE(5));
    printf("page-table entry 5 after ipte: invalid bit %s\n", pt_high[5] & PTE_I ? "set" : "clear");
    expect("page invalidated by IPTE", do_load, VA_PAGE(5));

    /* A region-first table of length 0: region-first indexes from 512 up are beyond it. */
    ctl_set(1, asce_r1_short);
    asm volatile("ptlb" : : : "memory");
    expect("region-first table length", do_load, VA_REGION1_512);

    /* A region-third table as ASCE: addresses of 4 TiB and more cannot be translated. */
    ctl_set(1, asce_r3);
    asm volatile("ptlb" : : : "memory");
    printf("load identity through a region-third ASCE: %s\n", load((uint64_t)&data0[0]) == 0x1111111111111111ULL ? "ok" : "wrong");
    expect("ASCE type", do_load, VA_ABOVE_2T);

    dat_off();
    cr1 = ctl_get(1);
    printf("dat off: %s, cr1 %s\n", psw_mask() & PSW_MASK_DAT ? "no" : "yes", cr1 == asce_r3 ? "kept" : "changed");
    return 0;
}
