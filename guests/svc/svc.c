/* svc.c: SUPERVISOR CALL interruptions: code, ILC, where the old PSW points, the state it was in. */
#include "runtime.h"

#define DECLARE(fn) extern void fn(void); extern const char fn##_insn[]
DECLARE(t_svc0); DECLARE(t_svc5); DECLARE(t_svc254); DECLARE(t_svc_ex); DECLARE(t_svc_exrl);
DECLARE(t_svc_problem);

static struct svc_info rec;

static int svc_hook(struct irq_frame *f)
{
    if (frame_lc16(f, LC_SVC_CODE) == 255) {
        f->psw.mask &= ~PSW_MASK_PSTATE;  /* back to supervisor state */
        return 1;
    }
    rec.code = frame_lc16(f, LC_SVC_CODE);
    rec.ilc = frame_lc16(f, LC_SVC_ILC);
    rec.old_psw = f->psw;
    rec.count++;
    return 1;
}

static void run(const char *name, void (*fn)(void), const char *insn)
{
    uint32_t before = rec.count;
    uint64_t at = (uint64_t)insn;
    const char *where;

    fn();
    if (rec.count != before + 1) {
        printf("%-12s %u interruptions\n", name, rec.count - before);
        return;
    }
    where = rec.old_psw.addr == at + rec.ilc ? "after" : rec.old_psw.addr == at ? "at" : "other";
    printf("%-12s code=%u ilc=%u psw=%s state=%s\n", name, rec.code, rec.ilc, where,
           rec.old_psw.mask & PSW_MASK_PSTATE ? "problem" : "supervisor");
}

int main(const char *cmdline)
{
    set_svc_hook(svc_hook);
    printf("svc: supervisor-call interruptions\n");
    run("svc 0", t_svc0, t_svc0_insn);
    run("svc 5", t_svc5, t_svc5_insn);
    run("svc 254", t_svc254, t_svc254_insn);
    run("ex svc", t_svc_ex, t_svc_ex_insn);
    run("exrl svc", t_svc_exrl, t_svc_exrl_insn);
    run("problem svc", t_svc_problem, t_svc_problem_insn);
    printf("state after svc 255: %s\n", psw_mask() & PSW_MASK_PSTATE ? "problem" : "supervisor");
    printf("svc interruptions seen by the runtime: %u\n", last_svc.count);
    return 0;
}
