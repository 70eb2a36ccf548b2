/* stats.h — what the benchmark programs share: a monotonic clock and the
 * summary of a run's samples (nanoseconds), printed the same way by all. */
#ifndef SBX_BENCH_STATS_H
#define SBX_BENCH_STATS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted samples, in ms. */
static inline double percentile_ms(const uint64_t *sorted, size_t n, double p)
{
    size_t rank = (size_t)((p / 100.0) * (double)n + 0.999999);

    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)sorted[rank - 1] / 1e6;
}

/* Sorts the samples and prints "[WHAT ]n=… median=…ms p90 p99 min max". */
static inline void print_summary(const char *what, uint64_t *samples, size_t n)
{
    qsort(samples, n, sizeof(*samples), compare_u64);
    if (what)
        printf("%-8s ", what);
    printf("n=%zu median=%.3fms p90=%.3fms p99=%.3fms min=%.3fms max=%.3fms\n", n,
           percentile_ms(samples, n, 50), percentile_ms(samples, n, 90),
           percentile_ms(samples, n, 99), (double)samples[0] / 1e6, (double)samples[n - 1] / 1e6);
}

#endif
