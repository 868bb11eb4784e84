/* libFuzzer target: the stored-value decoder must accept or refuse any
 * bytes without reading outside them; whatever it accepts as version 2 must
 * be exactly what the encoder would write for that payload, and a value
 * bound to one key must never be accepted for another. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "value.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char key[] = "fuzz-key", other[] = "fuzz-kez";
    uint64_t want = cachet_value_key_check(key, sizeof key - 1);
    uint64_t want_other = cachet_value_key_check(other, sizeof other - 1);
    cachet_value_meta m = {0, 0, 0, 0, 0, 0};
    /* a private copy, so ASan sees any read past the end */
    uint8_t *copy = malloc(size ? size : 1);
    memcpy(copy, data, size);
    for (int bound = 0; bound < 2; bound++) {
        if (cachet_value_decode(copy, size, bound ? want : 0, &m) != CACHET_OK)
            continue;
        if (cachet_value_valid(copy, size, bound ? want : 0, &m) == 0)
            abort();                    /* the two checks must agree */
        if (bound && cachet_value_valid(copy, size, want_other, &m) != 0)
            abort();                    /* never another key's value */
        if (m.version == CACHET_VALUE_VERSION) {
            uint8_t hdr[CACHET_VALUE_HDR];
            if (size < CACHET_VALUE_HDR)
                abort();
            cachet_value_header(hdr, &m, size - CACHET_VALUE_HDR);
            hdr[6] = copy[6];           /* reserved bytes are not checked */
            hdr[7] = copy[7];
            if (!(m.flags & CACHET_VF_KEY_BOUND))
                memcpy(hdr + 24, copy + 24, 8);   /* an unbound check is not read */
            if (memcmp(hdr, copy, CACHET_VALUE_HDR) != 0)
                abort();
        }
    }
    free(copy);
    return 0;
}
