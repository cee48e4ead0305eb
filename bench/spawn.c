/* The machine's sequential spawn limit for bench/peers.sh: N times
 * posix_spawn("/bin/sh", "-c", "true") and waitpid, one after another.
 * Prints the rate in spawns per second. No shell loop, no interpreter:
 * this is what a job daemon running `true` one at a time cannot beat. */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 500;
    char *args[] = {"sh", "-c", "true", NULL};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < n; i++) {
        pid_t pid;
        int status;
        if (posix_spawn(&pid, "/bin/sh", NULL, NULL, args, environ) != 0) {
            perror("posix_spawn /bin/sh");
            return 1;
        }
        if (waitpid(pid, &status, 0) < 0) {
            perror("waitpid");
            return 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%.1f\n", n / s);
    return 0;
}
