/* ferry-blast: a second, independent Ferry client, to check ferry-bench.
 * Written from docs/protocol.md alone (no SDK header, no shared code): one
 * thread, one epoll, C connections each keeping D requests in flight. Each
 * wake-up reads one gulp, counts the whole reply frames in it, and writes
 * that many new requests in one write. Closed loop, like ferry-bench.
 *
 *   ferry-blast -s SOCKET [-c 4] [-d 16] [-n 1000000] [-r 3]
 *               [--ping | -f demo.noop] [-p PAYLOAD]
 *
 * Prints calls/s per run, then min/median/max. Exits 1 on an ERROR reply or
 * a lost connection. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum { HDR = 16, T_HELLO = 1, T_CALL = 2, T_RESULT = 3, T_ERROR = 4, T_PING = 5, T_PONG = 6 };
#define INBUF (256 * 1024)

struct conn {
  int fd;
  unsigned char *in;
  size_t have;
  long sent, want;
  uint64_t *free_ids; /* ids answered and not yet reused */
  long nfree;
};

static const char *sock_path = "/tmp/ferry.sock", *function = "demo.noop", *payload = "[]";
static int nconn = 4, depth = 16, runs = 3, ping;
static long ncalls = 1000000;
static unsigned char *req; /* one request frame, rewritten per call id */
static size_t req_len;
static unsigned char *batch; /* depth requests, written at once */

static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void put16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint32_t get32(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *what) { perror(what); exit(1); }

/* The request frame: a CALL (timeout 0, priority normal, flags 0) or a PING. */
static void build_request(void) {
  size_t name_len = strlen(function), pay_len = strlen(payload);
  size_t body = ping ? pay_len : 8 + name_len + pay_len;
  req_len = HDR + body;
  req = calloc(1, req_len);
  put32(req, (uint32_t)body);
  req[4] = ping ? T_PING : T_CALL;
  unsigned char *b = req + HDR;
  if (!ping) {
    put16(b + 6, (uint16_t)name_len);
    memcpy(b + 8, function, name_len);
    b += 8 + name_len;
  }
  memcpy(b, payload, pay_len);
  batch = malloc(req_len * (size_t)depth);
}

static int read_full(int fd, unsigned char *p, size_t n) {
  while (n) {
    ssize_t r = read(fd, p, n);
    if (r <= 0) return -1;
    p += r, n -= (size_t)r;
  }
  return 0;
}

/* Connects and does the HELLO exchange (blocking); the socket stays blocking. */
static int open_conn(void) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  strncpy(a.sun_path, sock_path, sizeof a.sun_path - 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) die(sock_path);
  unsigned char hello[HDR + 8] = {0};
  put32(hello, 8);
  hello[4] = T_HELLO;
  put16(hello + HDR, 1);
  put16(hello + HDR + 2, 2);
  unsigned char h[HDR];
  if (write(fd, hello, sizeof hello) != (ssize_t)sizeof hello || read_full(fd, h, HDR)) die("hello");
  uint32_t n = get32(h);
  unsigned char body[64];
  if (h[4] != T_HELLO || n < 8 || n > sizeof body || read_full(fd, body, n) || body[0] != 1 || body[1] != 0) {
    fprintf(stderr, "ferry-blast: the server did not answer HELLO 1.x\n");
    exit(1);
  }
  return fd;
}

/* Writes k requests in one write, reusing the ids of answered ones (an id
 * may be reused once answered, and replies come in any order). */
static void send_requests(struct conn *c, long k) {
  for (long i = 0; i < k; i++) {
    memcpy(batch + (size_t)i * req_len, req, req_len);
    put64(batch + (size_t)i * req_len + 8, c->free_ids[--c->nfree]);
  }
  size_t len = (size_t)k * req_len, off = 0;
  while (off < len) {
    ssize_t w = write(c->fd, batch + off, len - off);
    if (w <= 0) die("write");
    off += (size_t)w;
  }
  c->sent += k;
}

/* Counts the whole frames at the front of c->in, keeps the rest. */
static long take_replies(struct conn *c) {
  size_t pos = 0;
  long got = 0;
  while (c->have - pos >= HDR) {
    uint32_t n = get32(c->in + pos);
    if (c->have - pos < HDR + n) break;
    unsigned char type = c->in[pos + 4];
    if (type == T_ERROR || type != (ping ? T_PONG : T_RESULT)) {
      fprintf(stderr, "ferry-blast: unexpected reply type %u\n", type);
      exit(1);
    }
    c->free_ids[c->nfree++] = get32(c->in + pos + 8) | (uint64_t)get32(c->in + pos + 12) << 32;
    pos += HDR + n;
    got++;
  }
  if (c->have - pos == INBUF) { fprintf(stderr, "ferry-blast: reply larger than the buffer\n"); exit(1); }
  c->have -= pos;
  memmove(c->in, c->in + pos, c->have);
  return got;
}

static double one_run(void) {
  struct conn *cs = calloc((size_t)nconn, sizeof *cs);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  long share = ncalls / nconn;
  for (int i = 0; i < nconn; i++) {
    cs[i].fd = open_conn();
    cs[i].in = malloc(INBUF);
    cs[i].want = share;
    cs[i].free_ids = malloc(sizeof(uint64_t) * (size_t)depth);
    for (int k = 0; k < depth; k++) cs[i].free_ids[cs[i].nfree++] = (uint64_t)(depth - k);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
  }
  double t0 = now();
  for (int i = 0; i < nconn; i++) send_requests(&cs[i], depth < share ? depth : share);
  long left = share * nconn;
  struct epoll_event evs[64];
  while (left > 0) {
    int n = epoll_wait(ep, evs, 64, 10000);
    if (n <= 0) { fprintf(stderr, "ferry-blast: no reply for 10 s\n"); exit(1); }
    for (int e = 0; e < n; e++) {
      struct conn *c = &cs[evs[e].data.u32];
      ssize_t r = read(c->fd, c->in + c->have, INBUF - c->have);
      if (r <= 0) { fprintf(stderr, "ferry-blast: connection lost\n"); exit(1); }
      c->have += (size_t)r;
      long got = take_replies(c);
      left -= got;
      long more = c->want - c->sent;
      if (more > got) more = got;
      if (more > 0) send_requests(c, more);
    }
  }
  double secs = now() - t0;
  for (int i = 0; i < nconn; i++) close(cs[i].fd), free(cs[i].in), free(cs[i].free_ids);
  free(cs);
  close(ep);
  return (double)(share * nconn) / secs;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  static struct option opts[] = {{"socket", 1, 0, 's'}, {"connections", 1, 0, 'c'}, {"depth", 1, 0, 'd'},
                                 {"calls", 1, 0, 'n'},  {"runs", 1, 0, 'r'},        {"function", 1, 0, 'f'},
                                 {"payload", 1, 0, 'p'}, {"ping", 0, 0, 'P'},       {0, 0, 0, 0}};
  for (int o; (o = getopt_long(argc, argv, "s:c:d:n:r:f:p:", opts, NULL)) != -1;) {
    switch (o) {
      case 's': sock_path = optarg; break;
      case 'c': nconn = atoi(optarg); break;
      case 'd': depth = atoi(optarg); break;
      case 'n': ncalls = atol(optarg); break;
      case 'r': runs = atoi(optarg); break;
      case 'f': function = optarg; break;
      case 'p': payload = optarg; break;
      case 'P': ping = 1; break;
      default: fprintf(stderr, "usage: ferry-blast -s SOCKET [-c C] [-d D] [-n N] [-r RUNS] [--ping | -f FN] [-p PAYLOAD]\n"); return 2;
    }
  }
  if (nconn < 1 || depth < 1 || runs < 1 || runs > 100 || ncalls < nconn || strlen(function) > 255) {
    fprintf(stderr, "ferry-blast: bad arguments\n");
    return 2;
  }
  build_request();
  double rates[100];
  for (int i = 0; i < runs; i++) {
    rates[i] = one_run();
    printf("run %d: %.0f calls/s\n", i + 1, rates[i]);
  }
  qsort(rates, (size_t)runs, sizeof rates[0], cmp);
  printf("%s %dx%d: min/median/max = %.0f/%.0f/%.0f calls/s\n", ping ? "PING" : function, nconn, depth, rates[0],
         rates[runs / 2], rates[runs - 1]);
  return 0;
}
