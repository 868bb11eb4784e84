/* placeholder, replaced by the cluster client */
#include "redis.h"
cachet_status rcluster_open(rinst *in) { (void)in; return cachet_backend_error(CACHET_ENOTSUP, "backend redis_cluster: not yet"); }
void rcluster_close(rinst *in) { (void)in; }
cachet_status rcluster_exec1(rinst *in, const char *key, size_t klen, rcmd *cmd, redisReply **rep) { (void)in; (void)key; (void)klen; (void)cmd; (void)rep; return CACHET_ENOTSUP; }
cachet_status rcluster_exec_multi(rinst *in, const cachet_backend_item *items, size_t n, int one_per_key, rcluster_group_fn build, rcluster_done_fn done, void *arg) { (void)in; (void)items; (void)n; (void)one_per_key; (void)build; (void)done; (void)arg; return CACHET_ENOTSUP; }
void rcluster_fork(rinst *in, int phase) { (void)in; (void)phase; }
void rcluster_report(rinst *in, cachet_backend_report_fn fn, void *arg) { (void)in; (void)fn; (void)arg; }
