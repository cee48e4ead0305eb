/* The API load generator of bench/peers.sh: N job submissions, one after
 * another, on ONE keep-alive connection to the daemon's Unix socket; each
 * waits for its 201 before the next is sent. Written in C so that the
 * client's own cost stays small beside the daemon's on a 2-core machine
 * (a python loop takes a tenth of the CPU the daemon needs).
 * Usage: api_submit SOCKET N   — prints the submissions per second. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char BODY[] = "{\"name\":\"t\",\"steps\":[{\"name\":\"s\",\"run\":\"true\"}]}";

/* Reads one HTTP response; returns its status or -1. */
static int read_response(int fd, char *buf, size_t cap) {
    size_t have = 0;
    for (;;) {
        ssize_t n = read(fd, buf + have, cap - 1 - have);
        if (n <= 0) return -1;
        have += (size_t)n;
        buf[have] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        if (!end) continue;
        size_t head = (size_t)(end + 4 - buf), length = 0;
        for (char *p = buf; p < end; p = strstr(p, "\r\n") + 2)
            if (strncasecmp(p, "content-length:", 15) == 0) length = strtoul(p + 15, NULL, 10);
        while (have < head + length) {
            n = read(fd, buf + have, cap - 1 - have);
            if (n <= 0) return -1;
            have += (size_t)n;
        }
        return atoi(buf + 9);
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s SOCKET N\n", argv[0]);
        return 2;
    }
    int n = atoi(argv[2]);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, argv[1], sizeof addr.sun_path - 1);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror(argv[1]);
        return 1;
    }
    char req[512], buf[65536];
    int len = snprintf(req, sizeof req,
                       "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Content-Length: %zu\r\n\r\n%s",
                       strlen(BODY), BODY);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < n; i++) {
        if (write(fd, req, (size_t)len) != len) {
            perror("write");
            return 1;
        }
        int status = read_response(fd, buf, sizeof buf);
        if (status != 201) {
            fprintf(stderr, "submission %d: status %d\n", i, status);
            return 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%.1f\n", n / s);
    return 0;
}
