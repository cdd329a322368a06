/* keys.c: storage keys: SSKE/ISKE/RRBE, key-controlled protection for stores and fetches, fetch-protection
 * override, storage-protection override, low-address protection, TPROT. Architecture-only: QEMU TCG does not
 * enforce key-controlled protection, so the expected output is the architected result. */
#include "runtime.h"

extern uint64_t k_load(uint64_t addr, uint64_t key);
extern void k_store(uint64_t addr, uint64_t key, uint64_t value);
extern int k_tprot(uint64_t addr, uint64_t key);
extern const char k_load_insn[], k_store_insn[];

static uint64_t page[512] ALIGNED(4096);

static void sske(uint64_t addr, uint8_t key)
{
    asm volatile("sske %0,%1" : : "d"((uint64_t)key), "a"(addr) : "memory");
}

static uint8_t iske(uint64_t addr)
{
    uint64_t k = 0;

    asm volatile("iske %0,%1" : "+d"(k) : "a"(addr));
    return (uint8_t)(k & 0xfe);
}

static int rrbe(uint64_t addr)
{
    int cc;

    asm volatile("rrbe 0,%[a]\n\tipm %[cc]\n\tsrl %[cc],28" : [cc] "=d"(cc) : [a] "a"(addr) : "cc", "memory");
    return cc;
}

struct access {
    int store;
    uint64_t addr, key, value;
};
static struct access acc;

static void do_access(void *arg)
{
    if (acc.store)
        k_store(acc.addr, acc.key, acc.value);
    else
        acc.value = k_load(acc.addr, acc.key);
}

/* One fetch or store with PSW key psw_key; prints "ok" or the interruption. */
static void try_access(const char *what, int store, uint64_t addr, unsigned psw_key)
{
    struct pgm_info info;
    uint64_t insn = store ? (uint64_t)k_store_insn : (uint64_t)k_load_insn;

    acc.store = store;
    acc.addr = addr;
    acc.key = (uint64_t)psw_key << 4;
    acc.value = abs_read64(addr);  /* a store writes back what is there */
    memset(&info, 0, sizeof(info));
    if (!pgm_catch(do_access, NULL, &info)) {
        printf("%-40s ok\n", what);
        return;
    }
    printf("%-40s code=0x%04x ilc=%u psw=%s\n", what, info.code, info.ilc,
           info.old_psw.addr == insn + info.ilc ? "after" : info.old_psw.addr == insn ? "at" : "other");
}

int main(const char *cmdline)
{
    const uint64_t a = (uint64_t)page;
    int cc1, cc2, cc3;
    uint8_t k;

    printf("keys: storage keys and protection\n");
    sske(a, 0x30);
    printf("sske 0x30, iske: 0x%02x\n", iske(a));
    page[0] = 1;
    printf("after a store with key 0, iske: 0x%02x\n", iske(a));
    cc1 = rrbe(a);
    cc2 = rrbe(a);
    printf("rrbe: cc=%d, again: cc=%d, iske: 0x%02x\n", cc1, cc2, iske(a));
    sske(a, 0x30);
    (void)*(volatile uint64_t *)page;
    k = iske(a);
    cc1 = rrbe(a);
    cc2 = rrbe(a);
    printf("sske 0x30, fetch: iske 0x%02x, rrbe cc=%d, rrbe cc=%d\n", k, cc1, cc2);

    /* Page key 3, not fetch-protected. */
    sske(a, 0x30);
    try_access("store, page key 3, psw key 5", 1, a, 5);
    try_access("fetch, page key 3, psw key 5", 0, a, 5);
    try_access("store, page key 3, psw key 3", 1, a, 3);
    try_access("store, page key 3, psw key 0", 1, a, 0);
    cc1 = k_tprot(a, 0x00);
    cc2 = k_tprot(a, 0x30);
    cc3 = k_tprot(a, 0x50);
    printf("tprot page key 3: key 0 cc=%d, key 3 cc=%d, key 5 cc=%d\n", cc1, cc2, cc3);

    /* Page key 3 with fetch protection. */
    sske(a, 0x38);
    try_access("fetch, page key 3 F, psw key 5", 0, a, 5);
    try_access("fetch, page key 3 F, psw key 3", 0, a, 3);
    try_access("store, page key 3 F, psw key 5", 1, a, 5);
    cc1 = k_tprot(a, 0x00);
    cc2 = k_tprot(a, 0x30);
    cc3 = k_tprot(a, 0x50);
    printf("tprot page key 3 F: key 0 cc=%d, key 3 cc=%d, key 5 cc=%d\n", cc1, cc2, cc3);
    printf("iske: 0x%02x\n", iske(a));

    /* Storage-protection override: key 9 pages accept any PSW key when CR0 bit 39 is one. */
    sske(a, 0x90);
    try_access("store, page key 9, psw key 5", 1, a, 5);
    ctl_set_bit(0, CR0_STOR_PROT_OVR);
    try_access("store, page key 9, psw key 5, override", 1, a, 5);
    sske(a, 0x30);
    try_access("store, page key 3, psw key 5, override", 1, a, 5);
    ctl_clear_bit(0, CR0_STOR_PROT_OVR);

    /* Fetch-protection override: locations 0-2047 of a fetch-protected page can be fetched. */
    sske(0, 0x08);
    try_access("fetch 0x100, page 0 key 0 F, psw key 5", 0, 0x100, 5);
    ctl_set_bit(0, CR0_FETCH_PROT_OVR);
    try_access("fetch 0x100, same, override", 0, 0x100, 5);
    try_access("fetch 0x900, same, override", 0, 0x900, 5);
    ctl_clear_bit(0, CR0_FETCH_PROT_OVR);
    sske(0, 0x00);

    /* Low-address protection: stores to real 0-511 and 4096-4607 are refused even with key 0. */
    ctl_set_bit(0, CR0_LOW_ADDR_PROT);
    try_access("store 0x1f8, low-address protection", 1, 0x1f8, 0);
    try_access("store 0x800, low-address protection", 1, 0x800, 0);
    try_access("store 0x1008, low-address protection", 1, 0x1008, 0);
    try_access("store 0x1208, low-address protection", 1, 0x1208, 0);
    ctl_clear_bit(0, CR0_LOW_ADDR_PROT);
    try_access("store 0x1f8, protection off", 1, 0x1f8, 0);

    sske(a, 0x00);
    return 0;
}
