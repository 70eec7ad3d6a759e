/* The REST API and the dashboard: placeholder until they land. */
#include "log.h"
#include "mdm.h"

int mdm_rest_start(struct mdm *m, const char *addr)
{
    (void)m;
    log_error("mdm: --http-listen %s: the REST API is not built yet", addr);
    return -1;
}

void mdm_rest_stop(struct mdm *m)
{
    (void)m;
}
