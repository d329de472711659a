// Proves a GPU works inside the container: lists the devices CUDA sees and runs a kernel.
#include <cstdio>
#include <cuda_runtime.h>

__global__ void add(const float *a, const float *b, float *c, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) c[i] = a[i] + b[i];
}

int main() {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        printf("gpucheck: no CUDA device (%s)\n", err != cudaSuccess ? cudaGetErrorString(err) : "count 0");
        return 1;
    }
    for (int d = 0; d < count; d++) {
        cudaDeviceProp p;
        cudaGetDeviceProperties(&p, d);
        printf("gpucheck: device %d: %s, %.1f GiB, compute %d.%d\n", d, p.name,
               p.totalGlobalMem / 1073741824.0, p.major, p.minor);
    }
    const int n = 1 << 20;
    float *a, *b, *c;
    if (cudaMallocManaged(&a, n * sizeof(float)) != cudaSuccess || cudaMallocManaged(&b, n * sizeof(float)) != cudaSuccess
        || cudaMallocManaged(&c, n * sizeof(float)) != cudaSuccess) {
        printf("gpucheck: cudaMallocManaged failed\n");
        return 1;
    }
    for (int i = 0; i < n; i++) { a[i] = i; b[i] = 2 * i; }
    add<<<(n + 255) / 256, 256>>>(a, b, c, n);
    err = cudaDeviceSynchronize();
    int wrong = 0;
    for (int i = 0; i < n; i++) if (c[i] != 3.0f * i) wrong++;
    printf("gpucheck: kernel on %d elements: %s, %d wrong\n", n, cudaGetErrorString(err), wrong);
    return (err == cudaSuccess && wrong == 0) ? 0 : 1;
}
