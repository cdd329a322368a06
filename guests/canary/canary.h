/* canary.h: the canary word of the canary guest (tests/trust_canary.py holds the same value). */
#ifndef ZUV_CANARY_H
#define ZUV_CANARY_H

/* No zero byte, no ASCII text, no byte repeated: it does not occur in code, tables or ciphertext by chance. */
#define CANARY 0xC3A9E15B7D2F8640ull

#endif
