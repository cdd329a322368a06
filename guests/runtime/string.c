/* string.c: memory and string functions the compiler and guests need, command-line parsing, EBCDIC. */
#include "runtime.h"

/* memcpy and memset use MOVE LONG EXTENDED (it stops after some bytes with cc 3; repeat until done). */
void *memcpy(void *dst, const void *src, size_t n)
{
    register uint64_t d asm("2") = (uint64_t)dst;
    register uint64_t dl asm("3") = n;
    register uint64_t s asm("4") = (uint64_t)src;
    register uint64_t sl asm("5") = n;

    asm volatile("0: mvcle %0,%2,0\n\tjo 0b" : "+d"(d), "+d"(dl), "+d"(s), "+d"(sl) : : "cc", "memory");
    return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;

    if (d <= s || d >= s + n)
        return memcpy(dst, src, n);  /* MVCLE moves left to right */
    while (n--)
        d[n] = s[n];
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    register uint64_t d asm("2") = (uint64_t)dst;
    register uint64_t dl asm("3") = n;
    register uint64_t s asm("4") = 0;
    register uint64_t sl asm("5") = 0;

    asm volatile("0: mvcle %0,%2,0(%4)\n\tjo 0b"
                 : "+d"(d), "+d"(dl), "+d"(s), "+d"(sl)
                 : "a"((uint64_t)(uint8_t)c)
                 : "cc", "memory");
    return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a, *y = b;

    for (; n; n--, x++, y++)
        if (*x != *y)
            return *x < *y ? -1 : 1;
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;

    while (s[n])
        n++;
    return n;
}

int strcmp(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return (unsigned char)*a - (unsigned char)*b;
}

int strncmp(const char *a, const char *b, size_t n)
{
    for (; n; n--, a++, b++) {
        if (*a != *b)
            return (unsigned char)*a - (unsigned char)*b;
        if (!*a)
            break;
    }
    return 0;
}

char *strstr(const char *h, const char *n)
{
    size_t len = strlen(n);

    for (; *h; h++)
        if (strncmp(h, n, len) == 0)
            return (char *)h;
    return len == 0 ? (char *)h : NULL;
}

uint64_t cmdline_number(const char *cmdline, const char *key, uint64_t dflt)
{
    size_t klen = strlen(key);
    const char *p = cmdline;

    while (*p) {
        while (*p == ' ')
            p++;
        if (strncmp(p, key, klen) == 0 && p[klen] == '=') {
            const char *q = p + klen + 1;
            unsigned base = 10;
            uint64_t v = 0;
            int digits = 0;

            if (q[0] == '0' && (q[1] == 'x' || q[1] == 'X')) {
                base = 16;
                q += 2;
            }
            for (;; q++, digits++) {
                unsigned d;

                if (*q >= '0' && *q <= '9')
                    d = (unsigned)(*q - '0');
                else if (base == 16 && *q >= 'a' && *q <= 'f')
                    d = (unsigned)(*q - 'a' + 10);
                else if (base == 16 && *q >= 'A' && *q <= 'F')
                    d = (unsigned)(*q - 'A' + 10);
                else
                    break;
                v = v * base + d;
            }
            return digits > 0 && (*q == 0 || *q == ' ') ? v : dflt;
        }
        while (*p && *p != ' ')
            p++;
    }
    return dflt;
}

/* Letter index 0..25 of an EBCDIC letter cell (rows 1-9 A-I, 1-9 J-R, 2-9 S-Z), or -1. */
static int ebcdic_letter(int row, int col)
{
    if (row == 0 && col >= 1 && col <= 9)
        return col - 1;
    if (row == 1 && col >= 1 && col <= 9)
        return 9 + col - 1;
    if (row == 2 && col >= 2 && col <= 9)
        return 18 + col - 2;
    return -1;
}

void ebcdic_to_ascii(char *dst, const uint8_t *src, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        uint8_t c = src[i];
        int hi = c >> 4, col = c & 0xf, letter;
        char a = '.';

        if (hi == 0xf && col <= 9)
            a = (char)('0' + col);
        else if (hi >= 0xc && hi <= 0xe && (letter = ebcdic_letter(hi - 0xc, col)) >= 0)
            a = (char)('A' + letter);
        else if (hi >= 0x8 && hi <= 0xa && (letter = ebcdic_letter(hi - 0x8, col)) >= 0)
            a = (char)('a' + letter);
        else {
            switch (c) {
            case 0x40: a = ' '; break;
            case 0x4b: a = '.'; break;
            case 0x4d: a = '('; break;
            case 0x4e: a = '+'; break;
            case 0x5c: a = '*'; break;
            case 0x5d: a = ')'; break;
            case 0x60: a = '-'; break;
            case 0x61: a = '/'; break;
            case 0x6b: a = ','; break;
            case 0x6d: a = '_'; break;
            case 0x7a: a = ':'; break;
            case 0x7e: a = '='; break;
            default: break;
            }
        }
        dst[i] = a;
    }
}
