/* pgm.c: provokes program interruptions and reports code, ILC, DXC and where the old PSW points.
 * Built twice: "pgm" (conditions QEMU 7.2 TCG implements) and, with -DARCH_PROBES, "pgm_arch" (conditions
 * it does not: fixed-point overflow, CVB, the early PSW specification exception), whose expected output
 * is the architected result. */
#include "runtime.h"

struct probe {
    const char *name;
    void (*fn)(void);
    const char *insn;
};

#define PROBE(fn, label) { label, fn, fn##_insn }
#define DECLARE(fn) extern void fn(void); extern const char fn##_insn[]
DECLARE(t_op2); DECLARE(t_op4); DECLARE(t_op6);
DECLARE(t_priv_ptlb); DECLARE(t_priv_lctlg); DECLARE(t_priv_servc);
DECLARE(t_execute);
DECLARE(t_spec_dr); DECLARE(t_spec_lpswe_align);
DECLARE(t_addr_load); DECLARE(t_addr_store);
DECLARE(t_divide_zero); DECLARE(t_divide_overflow); DECLARE(t_overflow);
DECLARE(t_data_decimal); DECLARE(t_data_afp); DECLARE(t_data_vector); DECLARE(t_data_trap);
DECLARE(t_spec_psw_bit12);

static const struct probe probes[] = {
#ifndef ARCH_PROBES
    PROBE(t_op2, "operation (2-byte)"),
    PROBE(t_op4, "operation (4-byte)"),
    PROBE(t_op6, "operation (6-byte)"),
    PROBE(t_priv_ptlb, "privileged PTLB"),
    PROBE(t_priv_lctlg, "privileged LCTLG"),
    PROBE(t_priv_servc, "privileged SERVC"),
    PROBE(t_execute, "execute EX of EX"),
    PROBE(t_spec_dr, "specification DR odd"),
    PROBE(t_spec_lpswe_align, "specification LPSWE+4"),
    PROBE(t_addr_load, "addressing LG 1TiB"),
    PROBE(t_addr_store, "addressing STG 1TiB"),
    PROBE(t_divide_zero, "divide DSGR by 0"),
    PROBE(t_divide_overflow, "divide DLGR overflow"),
    PROBE(t_data_afp, "data AFP register"),
    PROBE(t_data_vector, "data vector"),
    PROBE(t_data_trap, "data compare-and-trap"),
#else
    PROBE(t_overflow, "fixed-point overflow"),
    PROBE(t_data_decimal, "data CVB bad digit"),
#endif
};

static void call(void *fn)
{
    ((void (*)(void))fn)();
}

static const char *where(const struct pgm_info *info, const char *insn)
{
    static char buf[32];
    uint64_t at = (uint64_t)insn;

    if (info->old_psw.addr == at)
        return "at";
    if (info->old_psw.addr == at + info->ilc)
        return "after";
    snprintf(buf, sizeof(buf), "insn%+ld", (long)(info->old_psw.addr - at));
    return buf;
}

int main(const char *cmdline)
{
    struct pgm_info info;
    unsigned i, failures = 0;

    printf("pgm: program interruptions\n");
    for (i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
        const struct probe *p = &probes[i];

        memset(&info, 0, sizeof(info));
        if (!pgm_catch(call, (void *)p->fn, &info)) {
            printf("%-22s no interruption\n", p->name);
            failures++;
            continue;
        }
        printf("%-22s code=0x%04x ilc=%u psw=%s", p->name, info.code, info.ilc, where(&info, p->insn));
        if (info.code == 0x0007)
            printf(" dxc=0x%02x", info.dxc & 0xff);
        printf(" state=%s\n", info.old_psw.mask & PSW_MASK_PSTATE ? "problem" : "supervisor");
    }

#ifdef ARCH_PROBES
    /* LPSWE of a PSW with bit 12 set: recognised when the PSW is loaded (early): ILC 0, and the old PSW
     * is the invalid PSW itself. */
    memset(&info, 0, sizeof(info));
    if (pgm_catch(call, (void *)t_spec_psw_bit12, &info))
        printf("%-22s code=0x%04x ilc=%u old psw=%016lx addr=%s\n", "specification PSW b12", info.code, info.ilc,
               info.old_psw.mask, info.old_psw.addr == (uint64_t)t_spec_psw_bit12_insn + 4 ? "loaded" : "other");
    else {
        printf("%-22s no interruption\n", "specification PSW b12");
        failures++;
    }
#endif
    printf("pgm: %u probes without an interruption\n", failures);
    return failures ? 1 : 0;
}
