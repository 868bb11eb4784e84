/* libFuzzer target: any text given to cachet_config_parse is loaded or
 * refused with a message; it never crashes, leaks or reads out of bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cachet/cachet.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    cachet_config *c = cachet_config_new();
    memcpy(text, data, size);
    text[size] = '\0';
    if (cachet_config_parse(c, text, NULL) != CACHET_OK && !cachet_errmsg()[0])
        abort();                        /* a refusal always says why */
    cachet_config_free(c);
    free(text);
    return 0;
}
