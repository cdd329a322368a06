/* hello.c: greets, echoes the kernel command line and exits 0. */
#include "runtime.h"

int main(const char *cmdline)
{
    printf("Hello from a bare-metal s390x guest\n");
    printf("cmdline: \"%s\" (%u bytes)\n", cmdline, (unsigned)strlen(cmdline));
    printf("cpu address: %u\n", stap());
    printf("format: [%5d] [%-5d] [%05d] [%x] [%#010lx] [%c] [%.3s] [%u] [%ld]\n", 42, -7, 99, 0xbeefu,
           0x12345678UL, 'z', "abcdef", 4000000000u, -1234567890123L);
    return 0;
}
