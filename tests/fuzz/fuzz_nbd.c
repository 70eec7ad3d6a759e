/* The NBD server's pure parsers (client/nbd_parse.c): the client's flags,
 * NBD_OPT_GO/INFO and SET/LIST_META_CONTEXT option data, and transmission
 * request headers with their validation and payload decision. The first
 * byte picks the parser and the connection state. (The option-haggling
 * state machine, nbd_handshake_input, is not reached: see docs/fuzzing.md.) */
#include <stdlib.h>
#include <string.h>

#include "nbd_internal.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    data++, size--;
    const char *why;
    bool nz;
    switch (sel % 4) {
    case 0:
        if (size >= 4)
            nbd_client_flags_parse(get_be32(data), &nz);
        break;
    case 1: {
        struct nbd_opt_go go;
        if (nbd_opt_go_parse(data, (uint32_t)size, &go, &why) == 0) {
            if (go.name + go.name_len > data + size)
                abort();
            for (uint16_t i = 0; i < go.ninfo; i++)
                nbd_opt_go_info(&go, i);
        }
        break;
    }
    case 2: {
        struct nbd_opt_meta m;
        if (nbd_opt_meta_parse(data, (uint32_t)size, &m, &why) == 0) {
            nbd_opt_meta_selects_alloc(&m, true);
            nbd_opt_meta_selects_alloc(&m, false);
        }
        break;
    }
    case 3: {
        if (size < 28 + 8)
            break;
        struct nbd_conn_state st = {.size = get_be64(data + 28),
                                    .ro = sel & 4,
                                    .structured = sel & 8,
                                    .meta_alloc = sel & 16};
        struct nbd_request rq;
        if (nbd_request_decode(data, &rq) < 0)
            break;
        int err = nbd_request_validate(&st, &rq);
        nbd_request_payload(&rq, err);
        nbd_export_flags(&st);
        break;
    }
    }
    return 0;
}
