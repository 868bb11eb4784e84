/* libFuzzer target: the stored-value decoder must accept or refuse any
 * bytes without reading outside them, and whatever it accepts must be
 * exactly what the encoder would write for that payload. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "value.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cachet_value_meta m;
    /* a private copy, so ASan sees any read past the end */
    uint8_t *copy = malloc(size ? size : 1);
    memcpy(copy, data, size);
    if (cachet_value_decode(copy, size, &m) == CACHET_OK) {
        uint8_t hdr[CACHET_VALUE_HDR];
        if (size < CACHET_VALUE_HDR)
            abort();
        cachet_value_header(hdr, &m, size - CACHET_VALUE_HDR);
        hdr[6] = copy[6];               /* reserved bytes are not checked */
        hdr[7] = copy[7];
        if (memcmp(hdr, copy, CACHET_VALUE_HDR) != 0)
            abort();
    }
    free(copy);
    return 0;
}
