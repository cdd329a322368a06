/* echo.c: reads console input through SCLP Read Event Data and echoes each line back until "quit". */
#include "runtime.h"

int main(const char *cmdline)
{
    char buf[256];
    size_t n, lines = 0;

    (void)cmdline;
    printf("echo: type lines, \"quit\" ends\n");
    for (;;) {
        n = console_read_wait(buf, sizeof(buf) - 1);
        buf[n] = 0;
        while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
            buf[--n] = 0;
        if (n == 0)
            continue;
        lines++;
        printf("echo %lu: %s\n", lines, buf);
        if (!strcmp(buf, "quit"))
            break;
    }
    return 0;
}
