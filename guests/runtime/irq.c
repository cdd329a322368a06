/* irq.c: interruption dispatch and hooks, per-CPU lowcore set-up, exits and small machine helpers. */
#include "runtime.h"

void rt_sclp_service_signal(uint32_t param);
void rt_ext_entry(void);
void rt_svc_entry(void);
void rt_pgm_entry(void);
void rt_mck_entry(void);
void rt_io_entry(void);
void rt_secondary_entry(void);
void rt_catch_resume(void);
void rt_init_cpu0(void);
void rt_secondary_start(void (*fn)(uint64_t), uint64_t arg);
void rt_irq_dispatch(struct irq_frame *f, long cls);

/* State of pgm_catch(); crt0.S knows this layout (offsets 0, 8, 16, 24). */
struct rt_catch_state {
    uint64_t armed;
    uint64_t mask;
    struct pgm_info *info;
    uint64_t sp;
};
struct rt_catch_state rt_catch;
_Static_assert(offsetof(struct rt_catch_state, sp) == 24, "rt_catch layout");

struct rt_cpu_stacks rt_cpu0_stacks ALIGNED(4096);
volatile struct svc_info last_svc;

static irq_hook_t hooks[IRQ_CLASSES];
static volatile int panicking;

void set_ext_hook(irq_hook_t hook) { hooks[IRQ_CLASS_EXT] = hook; }
void set_svc_hook(irq_hook_t hook) { hooks[IRQ_CLASS_SVC] = hook; }
void set_pgm_hook(irq_hook_t hook) { hooks[IRQ_CLASS_PGM] = hook; }
void set_mck_hook(irq_hook_t hook) { hooks[IRQ_CLASS_MCK] = hook; }
void set_io_hook(irq_hook_t hook) { hooks[IRQ_CLASS_IO] = hook; }

static int call_hook(long cls, struct irq_frame *f)
{
    return hooks[cls] != NULL && hooks[cls](f);
}

void rt_irq_dispatch(struct irq_frame *f, long cls)
{
    switch (cls) {
    case IRQ_CLASS_EXT: {
        uint16_t code = frame_lc16(f, LC_EXT_CODE);

        if (code == EXT_SERVICE_SIGNAL)
            rt_sclp_service_signal(frame_lc32(f, LC_EXT_PARAM));
        if (!call_hook(cls, f) && code != EXT_SERVICE_SIGNAL)
            panic("unexpected external interruption code=0x%04x param=0x%08x cpu=%u psw=%016lx %016lx", code,
                  frame_lc32(f, LC_EXT_PARAM), frame_lc16(f, LC_EXT_CPU_ADDR), f->psw.mask, f->psw.addr);
        break;
    }
    case IRQ_CLASS_SVC:
        last_svc.code = frame_lc16(f, LC_SVC_CODE);
        last_svc.ilc = frame_lc16(f, LC_SVC_ILC);
        last_svc.old_psw.mask = f->psw.mask;
        last_svc.old_psw.addr = f->psw.addr;
        last_svc.count++;
        call_hook(cls, f);
        break;
    case IRQ_CLASS_PGM:
        if (rt_catch.armed) {
            struct pgm_info *info = rt_catch.info;

            rt_catch.armed = 0;
            info->code = frame_lc16(f, LC_PGM_CODE);
            info->ilc = frame_lc16(f, LC_PGM_ILC);
            info->dxc = frame_lc32(f, LC_DXC);
            info->teid = frame_lc64(f, LC_TEID);
            info->old_psw = f->psw;
            f->psw.mask = rt_catch.mask;
            f->psw.addr = (uint64_t)rt_catch_resume;
            f->gr[2] = 1;
            f->gr[15] = rt_catch.sp;
            return;
        }
        if (!call_hook(cls, f))
            panic("unexpected program interruption code=0x%04x ilc=%u psw=%016lx %016lx teid=%016lx",
                  frame_lc16(f, LC_PGM_CODE), frame_lc16(f, LC_PGM_ILC), f->psw.mask, f->psw.addr,
                  frame_lc64(f, LC_TEID));
        break;
    case IRQ_CLASS_MCK:
        if (!call_hook(cls, f))
            panic("unexpected machine-check interruption psw=%016lx %016lx", f->psw.mask, f->psw.addr);
        break;
    case IRQ_CLASS_IO:
        if (!call_hook(cls, f))
            panic("unexpected I/O interruption psw=%016lx %016lx", f->psw.mask, f->psw.addr);
        break;
    }
    /* Interrupted in an enabled wait (wait_for_ext): resume after it, disabled again. */
    if (f->psw.mask & PSW_MASK_WAIT)
        f->psw.mask &= ~(PSW_MASK_WAIT | PSW_MASK_EXT | PSW_MASK_IO);
}

void rt_lowcore_init(uint64_t lc, struct rt_cpu_stacks *stacks)
{
    static void (*const entries[IRQ_CLASSES])(void) = {
        [IRQ_CLASS_EXT] = rt_ext_entry, [IRQ_CLASS_SVC] = rt_svc_entry, [IRQ_CLASS_PGM] = rt_pgm_entry,
        [IRQ_CLASS_MCK] = rt_mck_entry, [IRQ_CLASS_IO] = rt_io_entry,
    };
    static const uint16_t new_psw[IRQ_CLASSES] = {
        [IRQ_CLASS_EXT] = LC_EXT_NEW_PSW, [IRQ_CLASS_SVC] = LC_SVC_NEW_PSW, [IRQ_CLASS_PGM] = LC_PGM_NEW_PSW,
        [IRQ_CLASS_MCK] = LC_MCK_NEW_PSW, [IRQ_CLASS_IO] = LC_IO_NEW_PSW,
    };
    int i;

    for (i = 0; i < IRQ_CLASSES; i++) {
        abs_write64(lc + LC_RT_STACK + 8 * i, (uint64_t)&stacks->irq[i][RT_IRQ_STACK_SIZE]);
        abs_write64(lc + new_psw[i], PSW_MASK_64);
        abs_write64(lc + new_psw[i] + 8, (uint64_t)entries[i]);
    }
    abs_write64(lc + LC_RT_MAIN_STACK, (uint64_t)&stacks->main[RT_STACK_SIZE]);
}

void rt_secondary_prepare(uint64_t lc, struct rt_cpu_stacks *stacks, void (*fn)(uint64_t), uint64_t arg)
{
    rt_lowcore_init(lc, stacks);
    abs_write64(lc + LC_RT_START_FN, (uint64_t)fn);
    abs_write64(lc + LC_RT_START_ARG, arg);
    abs_write64(lc + LC_RESTART_NEW_PSW, PSW_MASK_64);
    abs_write64(lc + LC_RESTART_NEW_PSW + 8, (uint64_t)rt_secondary_entry);
}

/* Called on a secondary CPU's own stack after SIGP RESTART. */
void rt_secondary_start(void (*fn)(uint64_t), uint64_t arg)
{
    ctl_set_bit(0, CR0_SERVICE_SIGNAL);
    fn(arg);
    cpu_stop_self();
}

void rt_init_cpu0(void)
{
    rt_lowcore_init(0, &rt_cpu0_stacks);
    ctl_set_bit(0, CR0_SERVICE_SIGNAL);
}

uint64_t psw_mask(void)
{
    uint64_t hi, lo;

    asm volatile("epsw %0,%1" : "=d"(hi), "=d"(lo));
    return (hi & 0xffffffffu) << 32 | (lo & 0xffffffffu);
}

uint16_t stap(void)
{
    uint16_t a;

    asm volatile("stap %0" : "=Q"(a));
    return a;
}

int sigp(uint16_t cpu, uint8_t order, uint64_t param, uint32_t *status)
{
    register uint64_t r2 asm("2") = 0;
    register uint64_t r3 asm("3") = param;
    int cc;

    asm volatile("sigp %[r1],%[addr],0(%[order])\n\t"
                 "ipm %[cc]\n\t"
                 "srl %[cc],28"
                 : [r1] "+d"(r2), [cc] "=d"(cc)
                 : "d"(r3), [addr] "d"((uint64_t)cpu), [order] "a"((uint64_t)order)
                 : "cc", "memory");
    if (cc == 1 && status != NULL)
        *status = (uint32_t)r2;
    return cc;
}

void cpu_stop_self(void)
{
    uint16_t me = stap();

    for (;;)
        sigp(me, SIGP_STOP, 0, NULL);
}

void exit(int code)
{
    printf("EXIT: STATUS=%d\n", code << 1 | 1);
    cpu_stop_self();
}

void panic(const char *fmt, ...)
{
    va_list ap;

    if (panicking)
        disabled_wait(0xbad);
    panicking = 1;
    printf("PANIC: ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    exit(127);
}
