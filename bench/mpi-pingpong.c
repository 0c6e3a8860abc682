/*
 * MPI ping-pong between ranks 0 and 1: for each message size, WARMUP untimed round trips, then
 * ITERS timed ones; rank 0 prints one line per size:
 *   pingpong size=<bytes> iters=<n> latency_us=<one-way time> bandwidth_MBps=<bytes/one-way time>
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void run(int rank, char *buf, int size, int iters)
{
	int peer = 1 - rank;
	for (int i = 0; i < iters / 10 + 10; i++) {
		if (rank == 0) {
			MPI_Send(buf, size, MPI_BYTE, peer, 0, MPI_COMM_WORLD);
			MPI_Recv(buf, size, MPI_BYTE, peer, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
		} else {
			MPI_Recv(buf, size, MPI_BYTE, peer, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
			MPI_Send(buf, size, MPI_BYTE, peer, 0, MPI_COMM_WORLD);
		}
	}
	MPI_Barrier(MPI_COMM_WORLD);
	double start = MPI_Wtime();
	for (int i = 0; i < iters; i++) {
		if (rank == 0) {
			MPI_Send(buf, size, MPI_BYTE, peer, 0, MPI_COMM_WORLD);
			MPI_Recv(buf, size, MPI_BYTE, peer, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
		} else {
			MPI_Recv(buf, size, MPI_BYTE, peer, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
			MPI_Send(buf, size, MPI_BYTE, peer, 0, MPI_COMM_WORLD);
		}
	}
	double oneWay = (MPI_Wtime() - start) / (2.0 * iters);
	if (rank == 0)
		printf("pingpong size=%d iters=%d latency_us=%.3f bandwidth_MBps=%.1f\n", size, iters, oneWay * 1e6,
		       size / oneWay / 1e6);
}

int main(int argc, char **argv)
{
	int rank, nranks;
	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &nranks);
	if (nranks != 2) {
		if (rank == 0)
			fprintf(stderr, "mpi-pingpong: run with exactly 2 ranks (mpiexec -n 2), not %d\n", nranks);
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	char *buf = malloc(1 << 20);
	memset(buf, 1, 1 << 20);
	run(rank, buf, 8, 5000);
	run(rank, buf, 1 << 20, 200);
	free(buf);
	MPI_Finalize();
	return 0;
}
