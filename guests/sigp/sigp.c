/* sigp.c: SIGNAL PROCESSOR between two CPUs: sense, set prefix, restart, stop, stop and store status. */
#include "runtime.h"

extern void cpu1_spin(volatile uint64_t *flag);
extern const char cpu1_spin_insn[], cpu1_spin_end[];

#define CPU1 1
#define SAVE_AREA 0x1200  /* store-status save area (absolute) */

static uint8_t cpu1_lowcore[8192] ALIGNED(8192);
static struct rt_cpu_stacks cpu1_stacks ALIGNED(4096);
static volatile uint64_t cpu1_done;
static volatile uint64_t cpu1_release;
static volatile uint64_t cpu1_spinning;

static uint32_t stpx(void)
{
    uint32_t p;

    asm volatile("stpx %0" : "=Q"(p));
    return p;
}

/* Runs on CPU 1 after SIGP RESTART. */
static void cpu1_main(uint64_t mode)
{
    if (mode == 1) {
        printf("cpu %u: running, prefix %s\n", stap(),
               stpx() == (uint32_t)(uint64_t)cpu1_lowcore ? "is its own lowcore" : "is wrong");
        cpu1_done = 1;
        return;  /* the runtime stops this CPU with SIGP STOP to itself */
    }
    cpu1_spinning = 1;
    cpu1_spin(&cpu1_release);
}

static void show(const char *what, int cc, uint32_t status)
{
    if (cc == 1)
        printf("%-40s cc=1 status=0x%08x\n", what, status);
    else
        printf("%-40s cc=%d\n", what, cc);
}

static void order(const char *what, uint16_t cpu, uint8_t code, uint64_t param)
{
    uint32_t status = 0;
    int cc = sigp(cpu, code, param, &status);

    show(what, cc, status);
}

static void wait_stopped(uint16_t cpu)
{
    uint32_t status = 0;
    unsigned i;

    for (i = 0; i < 100000000; i++) {
        status = 0;
        if (sigp(cpu, SIGP_SENSE, 0, &status) == 1 && (status & 0x40))
            return;
    }
    printf("cpu %u did not stop\n", cpu);
}

int main(const char *cmdline)
{
    uint64_t lc = (uint64_t)cpu1_lowcore;
    uint64_t psw_addr;
    uint32_t status;
    int cc;

    printf("sigp: cpu %u, prefix 0x%x\n", stap(), stpx());
    order("sense cpu 0 (self, operating)", 0, SIGP_SENSE, 0);
    order("sense cpu 1 (stopped)", CPU1, SIGP_SENSE, 0);
    order("sense running cpu 0", 0, SIGP_SENSE_RUNNING, 0);
    order("sense running cpu 1", CPU1, SIGP_SENSE_RUNNING, 0);
    order("sense cpu 5 (not there)", 5, SIGP_SENSE, 0);
    order("invalid order 0xff to cpu 1", CPU1, 0xff, 0);
    order("invalid order 0x00 to cpu 1", CPU1, 0x00, 0);
    order("set prefix cpu 1 beyond storage", CPU1, SIGP_SET_PREFIX, 0x7fffe000);

    /* First start: CPU 1 prints and stops itself. */
    rt_secondary_prepare(lc, &cpu1_stacks, cpu1_main, 1);
    order("set prefix cpu 1", CPU1, SIGP_SET_PREFIX, lc);
    /* CPU 1 prints while it runs: this CPU prints nothing until it has stopped (they share the SCCB). */
    status = 0;
    cc = sigp(CPU1, SIGP_RESTART, 0, &status);
    while (!cpu1_done)
        ;
    wait_stopped(CPU1);
    show("restart cpu 1 (it printed, then stopped)", cc, status);
    order("sense cpu 1 after it stopped", CPU1, SIGP_SENSE, 0);

    /* Second start: CPU 1 spins; orders to an operating CPU; then stop and store status. */
    rt_secondary_prepare(lc, &cpu1_stacks, cpu1_main, 2);
    order("restart cpu 1 again", CPU1, SIGP_RESTART, 0);
    while (!cpu1_spinning)
        ;
    order("sense cpu 1 (operating)", CPU1, SIGP_SENSE, 0);
    order("sense running cpu 1 (operating)", CPU1, SIGP_SENSE_RUNNING, 0);
    order("set prefix cpu 1 while operating", CPU1, SIGP_SET_PREFIX, lc);
    order("stop and store status cpu 1", CPU1, SIGP_STOP_STORE, 0);
    wait_stopped(CPU1);
    order("sense cpu 1 after stop", CPU1, SIGP_SENSE, 0);
    psw_addr = abs_read64(SAVE_AREA + 0x108);
    printf("stored r7=0x%lx prefix %s psw %s\n", abs_read64(SAVE_AREA + 0x80 + 7 * 8),
           (uint32_t)(abs_read64(SAVE_AREA + 0x118) >> 32) == (uint32_t)lc ? "matches" : "differs",
           psw_addr >= (uint64_t)cpu1_spin_insn && psw_addr < (uint64_t)cpu1_spin_end ? "in the spin loop"
                                                                                      : "elsewhere");
    order("set architecture", 0, SIGP_SET_ARCH, 0);
    return 0;
}
