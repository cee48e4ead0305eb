/* The event readers of bench/events.sh: N connections to the daemon's Unix
 * socket, each reading GET /v1/events until SIGTERM, then prints the bytes
 * read. Written in C (one epoll loop) so that the readers' own cost stays
 * small beside the daemon's on a 2-core machine: a python selector loop
 * took most of a core and so measured itself, not the daemon.
 * Usage: sse_readers SOCKET N   — prints "ready" once every reader is
 * connected, and the total bytes read at the end. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: sse_readers SOCKET N\n");
        return 2;
    }
    int n = atoi(argv[2]);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, argv[1], sizeof addr.sun_path - 1);
    int ep = epoll_create1(0);
    static const char REQ[] = "GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n";
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
            write(fd, REQ, sizeof REQ - 1) != (ssize_t)(sizeof REQ - 1)) {
            perror("sse_readers: connect");
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    printf("ready\n");
    fflush(stdout);
    static char buf[1 << 16];
    struct epoll_event evs[64];
    unsigned long long total = 0;
    while (!stop) {
        int k = epoll_wait(ep, evs, 64, 100);
        for (int i = 0; i < k; i++) {
            ssize_t r = read(evs[i].data.fd, buf, sizeof buf);
            if (r > 0)
                total += (unsigned long long)r;
            else
                epoll_ctl(ep, EPOLL_CTL_DEL, evs[i].data.fd, NULL);
        }
    }
    printf("%llu\n", total);
    return 0;
}
