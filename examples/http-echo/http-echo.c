/*
 * http-echo: a minimal HTTP/1.1 echo server, the reference network workload
 * of smolvm (start -> first answered request, idle memory, requests/s).
 *
 *   http-echo [PORT]        (default 8080; listens on 0.0.0.0)
 *
 * - POST/PUT (any request with a Content-Length body): answers 200 with the
 *   body, byte for byte, streamed (no size limit, constant memory).
 * - GET and other requests without a body: answers 200 "hello from http-echo\n".
 * - For throughput measurements: POST /discard reads the body and answers
 *   "N bytes\n" (client -> server only); GET /zeros/N answers N zero bytes
 *   (server -> client only, N up to 2^40).
 * - Keep-alive (HTTP/1.1 default, HTTP/1.0 with "Connection: keep-alive"),
 *   "Connection: close" honoured; chunked request bodies get 411.
 * - One thread per connection; UDP datagrams to the same port are echoed
 *   back (the UDP half of the smolvm network tests).
 *
 * Build: musl-gcc -Os -static -pthread -s -o http-echo http-echo.c (55 KB; glibc
 * works too, gcc -static, but its static binary is 15x larger)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_HEAD 16384
#define GET_TEXT "hello from http-echo\n"

struct conn {
	int fd;
	char buf[MAX_HEAD];
	size_t len; /* bytes in buf */
};

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Reads more bytes into c->buf, keeping one byte free for a NUL after
 * them; 0 on end of stream or error. */
static ssize_t fill(struct conn *c)
{
	for (;;) {
		ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r > 0)
			c->len += (size_t)r;
		return r < 0 ? 0 : r;
	}
}

/* The value of header `name` in the NUL-terminated head (its length in *vlen), or NULL. */
static const char *header(const char *head, const char *name, size_t *vlen)
{
	size_t nlen = strlen(name);
	for (const char *line = strstr(head, "\r\n"); line; line = strstr(line, "\r\n")) {
		line += 2;
		if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
			const char *v = line + nlen + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			const char *e = strstr(v, "\r\n");
			*vlen = e ? (size_t)(e - v) : strlen(v);
			while (*vlen > 0 && (v[*vlen - 1] == ' ' || v[*vlen - 1] == '\t'))
				(*vlen)--;
			return v;
		}
	}
	return NULL;
}

static int has_token(const char *v, size_t n, const char *token)
{
	size_t t = strlen(token);
	for (size_t i = 0; i + t <= n; i++)
		if (strncasecmp(v + i, token, t) == 0)
			return 1;
	return 0;
}

static int respond(int fd, int code, const char *reason, const char *type, unsigned long long len, int keep)
{
	char h[256];
	int n = snprintf(h, sizeof h, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %llu\r\n%s\r\n",
			 code, reason, type, len, keep ? "" : "Connection: close\r\n");
	return write_all(fd, h, (size_t)n);
}

/* A short text answer (errors, GET). */
static int answer(int fd, int code, const char *reason, const char *text, int keep)
{
	size_t n = strlen(text);
	return respond(fd, code, reason, "text/plain", n, keep) || write_all(fd, text, n);
}

/* Serves one request from c; returns 1 to keep the connection. */
static int serve_one(struct conn *c)
{
	char *end;
	for (;;) {
		c->buf[c->len] = 0;
		end = strstr(c->buf, "\r\n\r\n");
		if (end)
			break;
		if (c->len >= sizeof c->buf - 1) {
			answer(c->fd, 431, "Request Header Fields Too Large", "header too large\n", 0);
			return 0;
		}
		if (fill(c) == 0)
			return 0;
	}
	*end = 0; /* the head is now a C string */
	size_t head_len = (size_t)(end - c->buf) + 4;
	char *eol = strstr(c->buf, "\r\n");
	size_t first = eol ? (size_t)(eol - c->buf) : strlen(c->buf);
	int http10 = first >= 9 && memcmp(c->buf + first - 9, " HTTP/1.0", 9) == 0;
	size_t vlen;
	const char *conn = header(c->buf, "Connection", &vlen);
	int keep = http10 ? conn && has_token(conn, vlen, "keep-alive") : !(conn && has_token(conn, vlen, "close"));
	const char *te = header(c->buf, "Transfer-Encoding", &vlen);
	if (te) {
		answer(c->fd, 411, "Length Required", "chunked request bodies are not supported: send Content-Length\n", 0);
		return 0;
	}
	unsigned long long body = 0;
	const char *cl = header(c->buf, "Content-Length", &vlen);
	if (cl) {
		char *stop;
		errno = 0;
		body = strtoull(cl, &stop, 10);
		if (vlen == 0 || stop != cl + vlen || errno || *cl == '-' || *cl == '+') {
			answer(c->fd, 400, "Bad Request", "bad Content-Length\n", 0);
			return 0;
		}
	}
	int discard = strncmp(c->buf, "POST /discard ", 14) == 0;
	unsigned long long zeros = 0;
	if (strncmp(c->buf, "GET /zeros/", 11) == 0) {
		char *stop;
		zeros = strtoull(c->buf + 11, &stop, 10);
		if (*stop != ' ' || zeros > (1ULL << 40)) {
			answer(c->fd, 400, "Bad Request", "GET /zeros/N: N up to 2^40\n", 0);
			return 0;
		}
	}
	/* Drop the head; what follows it is the body (and maybe the next request). */
	memmove(c->buf, c->buf + head_len, c->len - head_len);
	c->len -= head_len;
	if (zeros) {
		static char zero[65536]; /* never written: .bss, not 64 KiB of file */
		if (respond(c->fd, 200, "OK", "application/octet-stream", zeros, keep))
			return 0;
		for (; zeros > 0; zeros -= zeros < sizeof zero ? zeros : sizeof zero)
			if (write_all(c->fd, zero, zeros < sizeof zero ? (size_t)zeros : sizeof zero))
				return 0;
		return keep;
	}
	if (!cl)
		return answer(c->fd, 200, "OK", GET_TEXT, keep) ? 0 : keep;
	unsigned long long total = body;
	if (!discard && respond(c->fd, 200, "OK", "application/octet-stream", body, keep))
		return 0;
	while (body > 0) {
		if (c->len == 0 && fill(c) == 0)
			return 0;
		size_t n = c->len < body ? c->len : (size_t)body;
		if (!discard && write_all(c->fd, c->buf, n))
			return 0;
		memmove(c->buf, c->buf + n, c->len - n);
		c->len -= n;
		body -= n;
	}
	if (discard) {
		char text[32];
		snprintf(text, sizeof text, "%llu bytes\n", total);
		return answer(c->fd, 200, "OK", text, keep) ? 0 : keep;
	}
	return keep;
}

static void *serve(void *arg)
{
	struct conn *c = arg;
	while (serve_one(c))
		;
	close(c->fd);
	free(c);
	return NULL;
}

static void *udp_echo(void *arg)
{
	int fd = *(int *)arg;
	static char buf[65536]; /* one UDP thread; too big for its stack */
	for (;;) {
		struct sockaddr_in from;
		socklen_t flen = sizeof from;
		ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
		if (n >= 0)
			sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, flen);
	}
	return NULL;
}

static int bound(int type, int port)
{
	int fd = socket(AF_INET, type, 0), one = 1;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((unsigned short)port) };
	a.sin_addr.s_addr = htonl(INADDR_ANY);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
	    bind(fd, (struct sockaddr *)&a, sizeof a)) {
		fprintf(stderr, "http-echo: cannot bind port %d: %s\n", port, strerror(errno));
		exit(1);
	}
	return fd;
}

/* SIGTERM/SIGINT: a clean stop (exit 0), as a service manager expects. */
static void on_stop(int sig)
{
	(void)sig;
	_exit(0);
}

int main(int argc, char **argv)
{
	char *stop;
	long port = argc > 1 ? strtol(argv[1], &stop, 10) : 8080;
	if (argc > 2 || (argc > 1 && (*stop || port < 1 || port > 65535))) {
		fprintf(stderr, "usage: http-echo [PORT]   (1-65535, default 8080)\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_stop);
	signal(SIGINT, on_stop);
	int lfd = bound(SOCK_STREAM, (int)port);
	if (listen(lfd, 128)) {
		perror("http-echo: listen");
		return 1;
	}
	static int ufd;
	ufd = bound(SOCK_DGRAM, (int)port);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	pthread_t t;
	if (pthread_create(&t, &attr, udp_echo, &ufd)) {
		fprintf(stderr, "http-echo: cannot start the UDP thread\n");
		return 1;
	}
	printf("http-echo listening on 0.0.0.0:%ld (tcp http, udp echo)\n", port);
	fflush(stdout);
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			continue;
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		struct conn *c = malloc(sizeof *c);
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->len = 0;
		if (pthread_create(&t, &attr, serve, c)) {
			close(fd);
			free(c);
		}
	}
}
