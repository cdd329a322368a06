/* vector.c: the vector-enhancements facility 1 (z14) instructions on fixed operands: for each case the
 * result register, the FPC and the condition code, or the program interruption (code, DXC/VXC) it took.
 * The same image runs under QEMU 7.2 TCG (which implements the facility) and zuv. */
#include "runtime.h"

struct vx {
    uint64_t v1[2], v2[2], v3[2], v4[2]; /* operands (v1: its value before the instruction) */
    uint32_t fpc_in, fpc_out, cc, pad;
    uint64_t out[2];                     /* v1 after the instruction */
    uint32_t mem;                        /* the storage operand of VLLEZLF */
} ALIGNED(16);
_Static_assert(__builtin_offsetof(struct vx, out) == 80, "vx layout");
_Static_assert(__builtin_offsetof(struct vx, mem) == 96, "vx layout");

/* One routine per case: load v1-v4 and the FPC from *r2, set CC 2, run the instruction, store CC, FPC, v1. */
#define STUB(name, insn)                                                                                  \
    extern void name(void *);                                                                             \
    asm(".pushsection .text\n .globl " #name "\n .type " #name ",@function\n" #name ":\n"                 \
        " .machine push\n .machine z14\n"                                                                 \
        " vl %v1,0(%r2)\n vl %v2,16(%r2)\n vl %v3,32(%r2)\n vl %v4,48(%r2)\n lfpc 64(%r2)\n"              \
        " lghi %r0,1\n ltgr %r0,%r0\n " insn "\n ipm %r0\n srl %r0,28\n st %r0,72(%r2)\n"               \
        " stfpc 68(%r2)\n vst %v1,80(%r2)\n br %r14\n .machine pop\n .popsection\n")

STUB(c_vbperm, "vbperm %v1,%v2,%v3");
STUB(c_vmsl, "vmslg %v1,%v2,%v3,%v4,12");
STUB(c_vpopcth, "vpopcth %v1,%v2");
STUB(c_vpopctf, "vpopctf %v1,%v2");
STUB(c_vpopctg, "vpopctg %v1,%v2");
STUB(c_vllezlf, "vllezlf %v1,96(%r2)");
STUB(c_vnn, "vnn %v1,%v2,%v3");
STUB(c_vnx, "vnx %v1,%v2,%v3");
STUB(c_voc, "voc %v1,%v2,%v3");
STUB(c_vfasb, "vfasb %v1,%v2,%v3");
STUB(c_vfssb, "vfssb %v1,%v2,%v3");
STUB(c_vfmsb, "vfmsb %v1,%v2,%v3");
STUB(c_vfdsb, "vfdsb %v1,%v2,%v3");
STUB(c_vfsqsb, "vfsqsb %v1,%v2");
STUB(c_vfmasb, "vfmasb %v1,%v2,%v3,%v4");
STUB(c_vfmssb, "vfmssb %v1,%v2,%v3,%v4");
STUB(c_vfnmasb, "vfnmasb %v1,%v2,%v3,%v4");
STUB(c_vfnmssb, "vfnmssb %v1,%v2,%v3,%v4");
STUB(c_vfnmadb, "vfnmadb %v1,%v2,%v3,%v4");
STUB(c_vfnmsdb, "vfnmsdb %v1,%v2,%v3,%v4");
STUB(c_wfaxb, "wfaxb %v1,%v2,%v3");
STUB(c_wfsxb, "wfsxb %v1,%v2,%v3");
STUB(c_wfmxb, "wfmxb %v1,%v2,%v3");
STUB(c_wfdxb, "wfdxb %v1,%v2,%v3");
STUB(c_wfsqxb, "wfsqxb %v1,%v2");
STUB(c_wfmaxb, "wfmaxb %v1,%v2,%v3,%v4");
STUB(c_wfmsxb, "wfmsxb %v1,%v2,%v3,%v4");
STUB(c_wfnmaxb, "wfnmaxb %v1,%v2,%v3,%v4");
STUB(c_wfnmsxb, "wfnmsxb %v1,%v2,%v3,%v4");
STUB(c_vfmax0, "vfmaxsb %v1,%v2,%v3,0");
STUB(c_vfmax1, "vfmaxsb %v1,%v2,%v3,1");
STUB(c_vfmax2, "vfmaxsb %v1,%v2,%v3,2");
STUB(c_vfmax3, "vfmaxsb %v1,%v2,%v3,3");
STUB(c_vfmax4, "vfmaxsb %v1,%v2,%v3,4");
STUB(c_vfmax8, "vfmaxsb %v1,%v2,%v3,8");
STUB(c_vfmax9, "vfmaxsb %v1,%v2,%v3,9");
STUB(c_vfmax10, "vfmaxsb %v1,%v2,%v3,10");
STUB(c_vfmax11, "vfmaxsb %v1,%v2,%v3,11");
STUB(c_vfmax12, "vfmaxsb %v1,%v2,%v3,12");
STUB(c_vfmin0, "vfminsb %v1,%v2,%v3,0");
STUB(c_vfmin1, "vfminsb %v1,%v2,%v3,1");
STUB(c_vfmin2, "vfminsb %v1,%v2,%v3,2");
STUB(c_vfmin3, "vfminsb %v1,%v2,%v3,3");
STUB(c_vfmin4, "vfminsb %v1,%v2,%v3,4");
STUB(c_vfmin8, "vfminsb %v1,%v2,%v3,8");
STUB(c_vfmin9, "vfminsb %v1,%v2,%v3,9");
STUB(c_vfmin12, "vfminsb %v1,%v2,%v3,12");
STUB(c_vfmaxdb1, "vfmaxdb %v1,%v2,%v3,1");
STUB(c_wfmaxxb0, "wfmaxxb %v1,%v2,%v3,0");
STUB(c_wfminxb4, "wfminxb %v1,%v2,%v3,4");
STUB(c_vfcesbs, "vfcesbs %v1,%v2,%v3");
STUB(c_vfchsbs, "vfchsbs %v1,%v2,%v3");
STUB(c_vfchesbs, "vfchesbs %v1,%v2,%v3");
STUB(c_vfkesb, "vfkesb %v1,%v2,%v3");
STUB(c_vfkhdbs, "vfkhdbs %v1,%v2,%v3");
STUB(c_wfcexbs, "wfcexbs %v1,%v2,%v3");
STUB(c_wfchxb, "wfchxb %v1,%v2,%v3");
STUB(c_wfcsb, "wfcsb %v1,%v2");
STUB(c_wfksb, "wfksb %v1,%v2");
STUB(c_wfcxb, "wfcxb %v1,%v2");
STUB(c_wfkxb, "wfkxb %v1,%v2");
STUB(c_vfisb0, "vfisb %v1,%v2,0,0");
STUB(c_vfisb1, "vfisb %v1,%v2,0,1");
STUB(c_vfisb5, "vfisb %v1,%v2,0,5");
STUB(c_vfisb7, "vfisb %v1,%v2,0,7");
STUB(c_wfixb6, "wfixb %v1,%v2,0,6");
STUB(c_wflld, "wflld %v1,%v2");
STUB(c_wflrx0, "wflrx %v1,%v2,0,0");
STUB(c_wflrx3, "wflrx %v1,%v2,0,3");
STUB(c_vflcsb, "vflcsb %v1,%v2");
STUB(c_vflnsb, "vflnsb %v1,%v2");
STUB(c_wflpxb, "wflpxb %v1,%v2");
STUB(c_vftcisb, "vftcisb %v1,%v2,0xa05");
STUB(c_wftcixb, "wftcixb %v1,%v2,0x800");

#define SB(a, b, c, d) { (uint64_t)(a) << 32 | (b), (uint64_t)(c) << 32 | (d) }
#define DB(a, b) { a, b }
#define F(a) ((uint64_t)(a))

/* binary32 */
#define S_1 0x3f800000u
#define S_2 0x40000000u
#define S_3 0x40400000u
#define S_M1 0xbf800000u
#define S_M3 0xc0400000u
#define S_HALF 0x3f000000u
#define S_TENTH 0x3dcccccdu
#define S_MAX 0x7f7fffffu
#define S_MINN 0x00800000u
#define S_SUB 0x00000001u
#define S_INF 0x7f800000u
#define S_MINF 0xff800000u
#define S_QNAN 0x7fc12345u
#define S_SNAN 0x7f800021u
#define S_MZ 0x80000000u
/* binary64 */
#define D_1 0x3ff0000000000000ul
#define D_3 0x4008000000000000ul
#define D_M2 0xc000000000000000ul
#define D_TENTH 0x3fb999999999999aul
#define D_QNAN 0x7ff8000000000123ul
#define D_SNAN 0x7ff0000000000321ul
/* binary128 as (high, low) */
#define X_1 { 0x3fff000000000000ul, 0 }
#define X_3 { 0x4000800000000000ul, 0 }
#define X_THIRD { 0x3ffd555555555555ul, 0x5555555555555555ul }
#define X_M1 { 0xbfff000000000000ul, 0 }
#define X_1ULP { 0x3fff000000000000ul, 1 }
#define X_M1_2ULP { 0xbfff000000000000ul, 2 }
#define X_SNAN { 0x7fff000000000000ul, 7 }
#define X_QNAN { 0x7fff800000000000ul, 9 }
#define X_TINY { 0x0000800000000000ul, 0 }

#define FPC_RZ 1
#define FPC_RP 2
#define FPC_RM 3
#define FPC_RODD 7
#define FPC_M_INV 0x80000000u
#define FPC_M_DIV 0x40000000u
#define FPC_M_OVF 0x20000000u
#define FPC_M_UNF 0x10000000u
#define FPC_M_INX 0x08000000u

struct vcase {
    const char *name;
    void (*fn)(void *);
    uint64_t v1[2], v2[2], v3[2], v4[2];
    uint32_t fpc;
    uint32_t mem;
};

#define Z { 0, 0 }
#define PRESET { 0xa5a5a5a5a5a5a5a5ul, 0x5a5a5a5a5a5a5a5aul }

static const struct vcase cases[] = {
    { "vbperm", c_vbperm, PRESET, { 0x8100000000000000ul, 1 }, { 0x0001077f80ff0000ul, 0x08090a0b0c0d0e7ful }, Z, 0, 0 },
    { "vmslg es os", c_vmsl, PRESET, { ~0ul, 3 }, { ~0ul, 5 }, { 0, 7 }, 0, 0 },
    { "vpopcth", c_vpopcth, PRESET, { 0xffff00ff80000000ul, 0x010107010f001f00ul }, Z, Z, 0, 0 },
    { "vpopctf", c_vpopctf, PRESET, { 0xffff00ff80000000ul, 0x010107010f001f00ul }, Z, Z, 0, 0 },
    { "vpopctg", c_vpopctg, PRESET, { 0xffff00ff80000000ul, 0x010107010f001f00ul }, Z, Z, 0, 0 },
    { "vllezlf", c_vllezlf, PRESET, Z, Z, Z, 0, 0xdeadbeef },
    { "vnn", c_vnn, PRESET, { 0xf0f0ul, 0xff }, { 0xff00ul, 0x0f }, Z, 0, 0 },
    { "vnx", c_vnx, PRESET, { 0xf0f0ul, 0xff }, { 0xff00ul, 0x0f }, Z, 0, 0 },
    { "voc", c_voc, PRESET, { 0xf0f0ul, 0xff }, { 0xff00ul, 0x0f }, Z, 0, 0 },
    /* short arithmetic: exact, inexact, NaN, infinity, subnormal. (Infinity times zero plus a quiet NaN is left
     * out: the architecture gives the default NaN and invalid operation, QEMU 7.2 the quiet NaN.) */
    { "vfasb", c_vfasb, PRESET, SB(S_1, S_TENTH, S_QNAN, S_INF), SB(S_2, S_TENTH, S_1, S_MINF), Z, 0, 0 },
    { "vfasb rz", c_vfasb, PRESET, SB(S_1, S_TENTH, S_MAX, S_SUB), SB(S_TENTH, S_M3, S_MAX, S_MINN), Z, FPC_RZ, 0 },
    { "vfasb rp", c_vfasb, PRESET, SB(S_1, S_TENTH, S_MAX, S_M1), SB(S_TENTH, S_M3, S_MAX, S_1), Z, FPC_RP, 0 },
    { "vfasb rm", c_vfasb, PRESET, SB(S_1, S_TENTH, S_MAX, S_M1), SB(S_TENTH, S_M3, S_MAX, S_1), Z, FPC_RM, 0 },
    { "vfasb rodd", c_vfasb, PRESET, SB(S_1, S_TENTH, S_MAX, S_M1), SB(S_TENTH, S_M3, S_MAX, S_1), Z, FPC_RODD, 0 },
    { "vfssb", c_vfssb, PRESET, SB(S_1, S_INF, S_SNAN, S_3), SB(S_3, S_INF, S_1, S_TENTH), Z, 0, 0 },
    { "vfmsb", c_vfmsb, PRESET, SB(S_3, S_INF, S_MINN, S_TENTH), SB(S_M3, 0, S_HALF, S_TENTH), Z, 0, 0 },
    { "vfdsb", c_vfdsb, PRESET, SB(S_1, 0, S_M1, S_MAX), SB(S_3, 0, 0, S_HALF), Z, 0, 0 },
    { "vfsqsb", c_vfsqsb, PRESET, SB(S_2, S_MZ, S_M1, S_SUB), Z, Z, 0, 0 },
    { "vfmasb", c_vfmasb, PRESET, SB(S_TENTH, S_INF, S_3, S_1), SB(S_TENTH, S_2, S_3, S_1), SB(S_M1, S_QNAN, S_M3, S_M1), 0, 0 },
    { "vfmssb", c_vfmssb, PRESET, SB(S_TENTH, S_2, S_3, S_1), SB(S_TENTH, S_HALF, S_3, S_1), SB(S_M1, S_1, S_M3, S_1), 0, 0 },
    { "vfnmasb", c_vfnmasb, PRESET, SB(S_TENTH, S_2, S_QNAN, S_1), SB(S_3, S_HALF, S_3, S_1), SB(S_M1, S_1, S_M3, S_M1), 0, 0 },
    { "vfnmssb", c_vfnmssb, PRESET, SB(S_TENTH, S_2, S_3, S_1), SB(S_3, S_HALF, S_3, S_1), SB(S_M1, S_1, S_M3, S_1), 0, 0 },
    { "vfnmadb", c_vfnmadb, PRESET, DB(D_TENTH, D_3), DB(D_3, D_M2), DB(D_1, D_1), 0, 0 },
    { "vfnmsdb", c_vfnmsdb, PRESET, DB(D_TENTH, D_SNAN), DB(D_3, D_M2), DB(D_1, D_1), 0, 0 },
    /* extended */
    { "wfaxb", c_wfaxb, PRESET, X_THIRD, X_1, Z, 0, 0 },
    { "wfsxb", c_wfsxb, PRESET, X_1, X_THIRD, Z, 0, 0 },
    { "wfmxb", c_wfmxb, PRESET, X_THIRD, X_3, Z, 0, 0 },
    { "wfdxb", c_wfdxb, PRESET, X_1, X_3, Z, 0, 0 },
    { "wfdxb rp", c_wfdxb, PRESET, X_1, X_3, Z, FPC_RP, 0 },
    { "wfsqxb", c_wfsqxb, PRESET, X_3, Z, Z, 0, 0 },
    { "wfmaxb fused", c_wfmaxb, PRESET, X_1ULP, X_1ULP, X_M1_2ULP, 0, 0 },
    { "wfmsxb", c_wfmsxb, PRESET, X_THIRD, X_3, X_1, 0, 0 },
    { "wfnmaxb", c_wfnmaxb, PRESET, X_THIRD, X_3, X_1, 0, 0 },
    { "wfnmsxb", c_wfnmsxb, PRESET, X_SNAN, X_3, X_QNAN, 0, 0 },
    { "wfmxb tiny", c_wfmxb, PRESET, X_TINY, X_TINY, Z, 0, 0 },
    /* maximum and minimum in each mode: (QNaN, 2) (-0, +0) (1, SNaN) (-3, 3) */
#define MM_A SB(S_QNAN, S_MZ, S_1, S_M3)
#define MM_B SB(S_2, 0, S_SNAN, S_3)
    { "vfmaxsb 0", c_vfmax0, PRESET, MM_A, MM_B, Z, 0, 0 },
    { "vfmaxsb 1", c_vfmax1, PRESET, MM_A, MM_B, Z, 0, 0 },
    { "vfmaxsb 2", c_vfmax2, PRESET, MM_A, MM_B, Z, 0, 0 },
    { "vfmaxsb 3", c_vfmax3, PRESET, MM_A, MM_B, Z, 0, 0 },
    { "vfmaxsb 4", c_vfmax4, PRESET, MM_A, MM_B, Z, 0, 0 },
    { "vfmaxsb 8", c_vfmax8, PRESET, MM_A, MM_B, Z, 0, 0 },
    { "vfmaxsb 9", c_vfmax9, PRESET, MM_A, MM_B, Z, 0, 0 },
    { "vfmaxsb 10", c_vfmax10, PRESET, MM_A, MM_B, Z, 0, 0 },
    { "vfmaxsb 11", c_vfmax11, PRESET, MM_A, MM_B, Z, 0, 0 },
    { "vfmaxsb 12", c_vfmax12, PRESET, MM_A, MM_B, Z, 0, 0 },
    { "vfminsb 0", c_vfmin0, PRESET, MM_A, MM_B, Z, 0, 0 },
    { "vfminsb 1", c_vfmin1, PRESET, MM_A, MM_B, Z, 0, 0 },
    { "vfminsb 2", c_vfmin2, PRESET, MM_A, MM_B, Z, 0, 0 },
    { "vfminsb 3", c_vfmin3, PRESET, MM_A, MM_B, Z, 0, 0 },
    { "vfminsb 4", c_vfmin4, PRESET, MM_A, MM_B, Z, 0, 0 },
    { "vfminsb 8", c_vfmin8, PRESET, SB(S_M3, S_MZ, S_1, S_M1), SB(S_2, 0, S_M3, S_1), Z, 0, 0 },
    { "vfminsb 9", c_vfmin9, PRESET, SB(S_M3, S_MZ, S_1, S_M1), SB(S_2, 0, S_M3, S_1), Z, 0, 0 },
    { "vfminsb 12", c_vfmin12, PRESET, SB(S_M3, S_MZ, S_1, S_M1), SB(S_2, 0, S_M3, S_1), Z, 0, 0 },
    { "vfmaxdb 1", c_vfmaxdb1, PRESET, DB(D_QNAN, D_M2), DB(D_1, D_1), Z, 0, 0 },
    { "wfmaxxb 0", c_wfmaxxb0, PRESET, X_QNAN, X_M1, Z, 0, 0 },
    { "wfminxb 4", c_wfminxb4, PRESET, X_M1, X_THIRD, Z, 0, 0 },
    /* compares */
    { "vfcesbs", c_vfcesbs, PRESET, SB(S_1, S_MZ, S_QNAN, S_3), SB(S_1, 0, S_QNAN, S_2), Z, 0, 0 },
    { "vfchsbs", c_vfchsbs, PRESET, SB(S_1, S_MZ, S_QNAN, S_3), SB(S_1, 0, S_QNAN, S_2), Z, 0, 0 },
    { "vfchesbs", c_vfchesbs, PRESET, SB(S_1, S_MZ, S_QNAN, S_3), SB(S_1, 0, S_QNAN, S_2), Z, 0, 0 },
    { "vfkesb", c_vfkesb, PRESET, SB(S_1, S_MZ, S_QNAN, S_3), SB(S_1, 0, S_QNAN, S_2), Z, 0, 0 },
    { "vfkhdbs", c_vfkhdbs, PRESET, DB(D_3, D_1), DB(D_1, D_3), Z, 0, 0 },
    { "wfcexbs", c_wfcexbs, PRESET, X_THIRD, X_THIRD, Z, 0, 0 },
    { "wfchxb", c_wfchxb, PRESET, X_1, X_THIRD, Z, 0, 0 },
    { "wfcsb", c_wfcsb, SB(S_1, 0, 0, 0), SB(S_2, 0, 0, 0), Z, Z, 0, 0 },
    { "wfksb", c_wfksb, SB(S_QNAN, 0, 0, 0), SB(S_2, 0, 0, 0), Z, Z, 0, 0 },
    { "wfcxb", c_wfcxb, X_3, X_1, Z, Z, 0, 0 },
    { "wfkxb", c_wfkxb, X_THIRD, X_THIRD, Z, Z, 0, 0 },
    /* load FP integer, lengthened, rounded; sign operations; test data class */
    { "vfisb", c_vfisb0, PRESET, SB(0x40200000, 0xc0200000, 0x3fa00000, 0xbf400000), Z, Z, 0, 0 },
    { "vfisb away", c_vfisb1, PRESET, SB(0x40200000, 0xc0200000, 0x3fa00000, 0xbf400000), Z, Z, 0, 0 },
    { "vfisb rz", c_vfisb5, PRESET, SB(0x40200000, 0xc0200000, 0x3fa00000, 0xbf400000), Z, Z, 0, 0 },
    { "vfisb rm", c_vfisb7, PRESET, SB(0x40200000, 0xc0200000, 0x3fa00000, S_SNAN), Z, Z, 0, 0 },
    { "wfixb rp", c_wfixb6, PRESET, X_THIRD, Z, Z, 0, 0 },
    { "wflld", c_wflld, PRESET, DB(D_TENTH, D_1), Z, Z, 0, 0 },
    { "wflld snan", c_wflld, PRESET, DB(D_SNAN, D_1), Z, Z, 0, 0 },
    { "wflrx", c_wflrx0, PRESET, X_THIRD, Z, Z, 0, 0 },
    { "wflrx rodd", c_wflrx3, PRESET, X_THIRD, Z, Z, 0, 0 },
    { "wflrx tiny", c_wflrx0, PRESET, X_TINY, Z, Z, 0, 0 },
    { "vflcsb", c_vflcsb, PRESET, SB(S_1, S_MZ, S_QNAN, S_MINF), Z, Z, 0, 0 },
    { "vflnsb", c_vflnsb, PRESET, SB(S_1, S_MZ, S_QNAN, S_MINF), Z, Z, 0, 0 },
    { "wflpxb", c_wflpxb, PRESET, X_M1, Z, Z, 0, 0 },
    { "vftcisb", c_vftcisb, PRESET, SB(0, S_MZ, S_SNAN, S_SUB), Z, Z, 0, 0 },
    { "wftcixb", c_wftcixb, PRESET, Z, Z, Z, 0, 0 },
    /* enabled IEEE exceptions: vector-processing exception, element index and cause */
    { "vfdsb div trap", c_vfdsb, PRESET, SB(S_1, S_1, S_1, S_1), SB(S_1, S_2, 0, 0), Z, FPC_M_DIV, 0 },
    { "vfasb ovf trap", c_vfasb, PRESET, SB(S_1, S_MAX, S_1, S_1), SB(S_1, S_MAX, S_1, S_1), Z, FPC_M_OVF, 0 },
    { "vfmsb unf trap", c_vfmsb, PRESET, SB(S_1, S_1, S_1, S_MINN), SB(S_1, S_1, S_1, S_TENTH), Z, FPC_M_UNF, 0 },
    { "wfdxb inx trap", c_wfdxb, PRESET, X_1, X_3, Z, FPC_M_INX, 0 },
    { "vfmax1 inv trap", c_vfmax1, PRESET, MM_A, MM_B, Z, FPC_M_INV, 0 },
    { "vfsqsb inv trap", c_vfsqsb, PRESET, SB(S_1, S_M1, 0, 0), Z, Z, FPC_M_INV | FPC_M_INX, 0 },
    { "vfasb no trap", c_vfasb, PRESET, SB(S_1, S_MAX, S_1, S_TENTH), SB(S_1, S_MAX, S_1, S_1), Z, FPC_M_INV, 0 },
};

static struct vx st;

static void read_v1(uint64_t out[2])
{
    asm volatile(".machine push\n .machine z13\n vst %%v1,%0\n .machine pop" : "=Q"(*(uint64_t(*)[2])out));
}

static uint32_t read_fpc(void)
{
    uint32_t fpc;

    asm volatile("stfpc %0" : "=Q"(fpc));
    return fpc;
}

int main(const char *cmdline)
{
    struct pgm_info info;
    unsigned i;

    ctl_set_bit(0, 0x60000); /* AFP registers and vector instructions */
    printf("vector: vector-enhancements facility 1\n");
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct vcase *c = &cases[i];

        memcpy(st.v1, c->v1, 16);
        memcpy(st.v2, c->v2, 16);
        memcpy(st.v3, c->v3, 16);
        memcpy(st.v4, c->v4, 16);
        st.fpc_in = c->fpc;
        st.mem = c->mem;
        st.cc = 9;
        memset(&info, 0, sizeof(info));
        if (pgm_catch(c->fn, &st, &info)) {
            read_v1(st.out);
            printf("%-16s pgm=0x%02x dxc=%02x fpc=%08x v1=%016lx%016lx\n", c->name, info.code,
                   info.dxc & 0xff, read_fpc(), st.out[0], st.out[1]);
            continue;
        }
        printf("%-16s v1=%016lx%016lx fpc=%08x cc=%u\n", c->name, st.out[0], st.out[1], st.fpc_out, st.cc);
    }
    return 0;
}
