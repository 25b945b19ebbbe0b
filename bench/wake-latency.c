// What a wake-up from the other core costs on this machine (bench/, not built by npm; results reported, never
// asserted). Two processes pinned to cores A and B ping-pong one byte over two pipes, each blocked in read()
// between hops; prints the round trip's p10 / p50 / p90 in µs. With A == B every hop is a switch on one core;
// with A != B every hop wakes a process on the other core (an inter-processor interrupt: on a VM, exits to the
// hypervisor). GAP_US sleeps between round trips, so that an idle core can halt in between.
//
//   gcc -O2 -o /tmp/wake-latency bench/wake-latency.c && /tmp/wake-latency A B [ROUND_TRIPS] [GAP_US]
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void pin(int core) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(core, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) perror("sched_setaffinity");
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s A B [ROUND_TRIPS] [GAP_US]\n", argv[0]);
    return 2;
  }
  int a = atoi(argv[1]), b = atoi(argv[2]);
  int n = argc > 3 ? atoi(argv[3]) : 5000;
  double gap = argc > 4 ? atof(argv[4]) : 0;
  int ping[2], pong[2];
  if (pipe(ping) != 0 || pipe(pong) != 0) return 1;
  char byte = 0;
  if (fork() == 0) {
    pin(b);
    for (int i = 0; i < n; i++) {
      if (read(ping[0], &byte, 1) != 1 || write(pong[1], &byte, 1) != 1) _exit(1);
    }
    _exit(0);
  }
  pin(a);
  double *rtt = malloc(sizeof(double) * n);
  for (int i = 0; i < n; i++) {
    if (gap > 0) usleep((useconds_t)gap);
    double t0 = now_us();
    if (write(ping[1], &byte, 1) != 1 || read(pong[0], &byte, 1) != 1) return 1;
    rtt[i] = now_us() - t0;
  }
  wait(NULL);
  qsort(rtt, n, sizeof(double), by_value);
  printf("{\"cores\":\"%d->%d\",\"gapUs\":%g,\"p10\":%.1f,\"p50\":%.1f,\"p90\":%.1f}\n", a, b, gap, rtt[n / 10],
         rtt[n / 2], rtt[n * 9 / 10]);
  return 0;
}
