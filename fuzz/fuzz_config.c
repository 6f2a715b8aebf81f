/*
 * fuzz_config.c -- libFuzzer harness for config_load (src/config.c).
 *
 * Input: the bytes of a litevault.yml file.  They are written to a file in
 * the scratch directory and loaded with config_load.  The environment
 * holds a few variables so that ${VAR} expansion succeeds for the names
 * used in the seeds and the dictionary (fuzz/config.dict):
 *   LVFUZZ_DIR=/tmp/lvfuzz-expanded   LVFUZZ_REL=rel/dir
 *   LVFUZZ_SIZE=64MiB   LVFUZZ_DUR=30s   LVFUZZ_EMPTY=""   LVFUZZ_LONG=<300 x 'a'>
 * (HOME and PATH come from the environment as usual).
 *
 * Checked beyond "no crash, no leak, no UB":
 *   - on success every string field is set and fuse.dir / data.dir are
 *     absolute (relative ones are resolved against the file's directory);
 *   - on LV_ECONFIG the error message is not empty.
 * config_free is called after every load (it is documented as harmless
 * after an error), so leaks on error paths show up in LeakSanitizer.
 */
#include <stddef.h>

#include "daemon/config.h"
#include "base/lv.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char longv[301];

    (void)argc;
    (void)argv;
    fz_init("config", "litevault.yml");
    memset(longv, 'a', 300);
    longv[300] = '\0';
    setenv("LVFUZZ_DIR", "/tmp/lvfuzz-expanded", 1);
    setenv("LVFUZZ_REL", "rel/dir", 1);
    setenv("LVFUZZ_SIZE", "64MiB", 1);
    setenv("LVFUZZ_DUR", "30s", 1);
    setenv("LVFUZZ_EMPTY", "", 1);
    setenv("LVFUZZ_LONG", longv, 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config cfg;
    char err[512];
    int rc;

    if (size > 64 * 1024)
        return 0;
    memset(&cfg, 0, sizeof cfg);
    memset(err, 'x', sizeof err);
    rc = config_load(fz_file(data, size), &cfg, err, sizeof err);
    if (memchr(err, '\0', sizeof err) == NULL) {
        fprintf(stderr, "config_load left err without a terminating NUL (rc %d)\n", rc);
        abort();
    }
    if (rc == 0) {
        if (!cfg.path || !cfg.fuse_dir || !cfg.data_dir || !cfg.http_addr) {
            fprintf(stderr, "config_load succeeded with a NULL string field\n");
            abort();
        }
        if (cfg.fuse_dir[0] != '/' || cfg.data_dir[0] != '/') {
            fprintf(stderr, "config_load succeeded with a relative dir: fuse.dir=\"%s\" data.dir=\"%s\"\n",
                    cfg.fuse_dir, cfg.data_dir);
            abort();
        }
        if (cfg.log_level < LVLOG_ERROR || cfg.log_level > LVLOG_DEBUG || cfg.segment_size <= 0 ||
            cfg.state_interval_us < 0) {
            fprintf(stderr, "config_load succeeded with an out-of-range value: level %d, segment-size %lld, "
                            "state-interval %lld us\n",
                    cfg.log_level, (long long)cfg.segment_size, (long long)cfg.state_interval_us);
            abort();
        }
    } else if (rc == LV_ECONFIG && err[0] == '\0') {
        fprintf(stderr, "config_load returned LV_ECONFIG without a message\n");
        abort();
    }
    config_free(&cfg);
    return 0;
}
