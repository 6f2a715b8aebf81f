/*
 * lvlog.h -- leveled logging to stderr, as text or one JSON object a line.
 *
 * LV_ERROR/LV_WARN/LV_INFO/LV_DEBUG check the level before formatting, so a
 * disabled level costs one comparison.  Thread-safe: each line is written
 * with a single write(2).
 */
#ifndef LVLOG_H
#define LVLOG_H

enum lvlog_level { LVLOG_ERROR = 0, LVLOG_WARN = 1, LVLOG_INFO = 2, LVLOG_DEBUG = 3 };

/* Current threshold; lines above it are dropped.  Written only by lvlog_setup. */
extern int lvlog_threshold;

/* Set level and format.  fmt_json: 1 for JSON lines, 0 for text. */
void lvlog_setup(int level, int fmt_json);

/* Parse "error", "warn", "info", "debug" into *level; 0 or -1 if unknown. */
int lvlog_parse_level(const char *s, int *level);

/* Write one line (use the macros instead). */
void lvlog_write(int level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define LV_LOG(lvl, ...) \
    do { if ((lvl) <= lvlog_threshold) lvlog_write((lvl), __FILE__, __LINE__, __VA_ARGS__); } while (0)
#define LV_ERROR(...) LV_LOG(LVLOG_ERROR, __VA_ARGS__)
#define LV_WARN(...) LV_LOG(LVLOG_WARN, __VA_ARGS__)
#define LV_INFO(...) LV_LOG(LVLOG_INFO, __VA_ARGS__)
#define LV_DEBUG(...) LV_LOG(LVLOG_DEBUG, __VA_ARGS__)

#endif /* LVLOG_H */
