/* uvattest.c: attestation from inside a Linux secure guest through /dev/uv (the uvdevice's UVIO_IOCTL_ATT).
 *
 * Reads a pvattest exchange file (the request: its ARCB and the expected measurement and additional-data
 * sizes), asks the Ultravisor for the measurement with the Retrieve Attestation Measurement UVC, and prints
 * what the response needs as hex lines on standard output ("uvattest: measurement ..."), for the relying
 * party's side to put into the response and verify. Exit status 0 when the UVC succeeded. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

struct uvio_ioctl_cb {
    uint32_t flags;
    uint16_t uv_rc;
    uint16_t uv_rrc;
    uint64_t argument_addr;
    uint32_t argument_len;
    uint8_t reserved14[0x40 - 0x14];
};

struct uvio_attest {
    uint64_t arcb_addr;
    uint64_t meas_addr;
    uint64_t add_data_addr;
    uint8_t user_data[256];
    uint8_t config_uid[16];
    uint32_t arcb_len;
    uint32_t meas_len;
    uint32_t add_data_len;
    uint16_t user_data_len;
    uint16_t reserved136;
};

_Static_assert(sizeof(struct uvio_ioctl_cb) == 0x40, "uvio_ioctl_cb");
_Static_assert(sizeof(struct uvio_attest) == 0x138, "uvio_attest");

#define UVIO_IOCTL_ATT _IOWR('u', 1, struct uvio_ioctl_cb)

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

static void hex(const char *what, const uint8_t *p, size_t n)
{
    printf("uvattest: %s ", what);
    for (size_t i = 0; i < n; i++)
        printf("%02x", p[i]);
    printf("\n");
}

int main(int argc, char **argv)
{
    static uint8_t file[1 << 21];
    const char *path = argc > 1 ? argv[1] : "/attest/request.bin";
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        perror(path);
        return 2;
    }
    ssize_t n = read(fd, file, sizeof(file));
    close(fd);
    if (n < 0x40 || memcmp(file, "pvattest", 8) != 0) {
        fprintf(stderr, "%s: not a pvattest exchange file\n", path);
        return 2;
    }
    uint32_t arcb_len = be32(file + 0x18), arcb_off = be32(file + 0x1c);
    uint32_t meas_len = be32(file + 0x20), add_len = be32(file + 0x28);
    if (!arcb_len || (uint64_t)arcb_off + arcb_len > (uint64_t)n || !meas_len || meas_len > 8 * 4096 ||
        add_len > 8 * 4096) {
        fprintf(stderr, "%s: bad exchange entries\n", path);
        return 2;
    }
    static uint8_t meas[8 * 4096], add[8 * 4096];
    struct uvio_attest att;
    memset(&att, 0, sizeof(att));
    att.arcb_addr = (uint64_t)(uintptr_t)(file + arcb_off);
    att.arcb_len = arcb_len;
    att.meas_addr = (uint64_t)(uintptr_t)meas;
    att.meas_len = meas_len;
    att.add_data_addr = add_len ? (uint64_t)(uintptr_t)add : 0;
    att.add_data_len = add_len;
    struct uvio_ioctl_cb cb;
    memset(&cb, 0, sizeof(cb));
    cb.argument_addr = (uint64_t)(uintptr_t)&att;
    cb.argument_len = sizeof(att);
    fd = open("/dev/uv", O_RDWR);
    if (fd < 0) {
        perror("/dev/uv");
        return 2;
    }
    int r = ioctl(fd, UVIO_IOCTL_ATT, &cb);
    close(fd);
    printf("uvattest: ioctl %d rc 0x%04x rrc 0x%04x\n", r, cb.uv_rc, cb.uv_rrc);
    if (r != 0 || cb.uv_rc != 1)
        return 1;
    hex("measurement", meas, att.meas_len);
    if (add_len)
        hex("additional", add, att.add_data_len);
    hex("cuid", att.config_uid, sizeof(att.config_uid));
    return 0;
}
