/* Prometheus metrics of the MDM: placeholder until they land. */
#include "log.h"
#include "mdm.h"

int mdm_metrics_start(struct mdm *m, const char *addr)
{
    (void)m;
    log_error("mdm: --metrics-listen %s: not built yet", addr);
    return -1;
}

void mdm_metrics_stop(struct mdm *m)
{
    (void)m;
}
