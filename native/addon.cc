// shifter_native.node: the few socket calls Node has no API for. Each function is one syscall
// sequence; every fd it creates is close-on-exec. Errors throw with the syscall and errno text.
#include <napi.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

Napi::Value ThrowErrno(Napi::Env env, const char* what, int err) {
  Napi::Error e = Napi::Error::New(env, std::string(what) + ": " + strerror(err));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, what));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

bool ToFd(const Napi::CallbackInfo& info, size_t i, int* fd) {
  if (info.Length() <= i || !info[i].IsNumber()) {
    Napi::TypeError::New(info.Env(), "expected a file descriptor number").ThrowAsJavaScriptException();
    return false;
  }
  *fd = info[i].As<Napi::Number>().Int32Value();
  return true;
}

// { pid, uid, gid, groups } of the peer of a connected unix socket, from the kernel.
Napi::Value GetPeerCredentials(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ToFd(info, 0, &fd)) return env.Undefined();
  struct ucred cred;
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return ThrowErrno(env, "SO_PEERCRED", errno);
  std::vector<gid_t> groups(64);
  socklen_t glen = groups.size() * sizeof(gid_t);
  while (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &glen) < 0) {
    if (errno != ERANGE || glen <= groups.size() * sizeof(gid_t)) return ThrowErrno(env, "SO_PEERGROUPS", errno);
    groups.resize(glen / sizeof(gid_t));
  }
  groups.resize(glen / sizeof(gid_t));
  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", Napi::Number::New(env, cred.pid));
  out.Set("uid", Napi::Number::New(env, cred.uid));
  out.Set("gid", Napi::Number::New(env, cred.gid));
  Napi::Array arr = Napi::Array::New(env, groups.size());
  for (size_t i = 0; i < groups.size(); i++) arr.Set(i, Napi::Number::New(env, groups[i]));
  out.Set("groups", arr);
  return out;
}

// Sends data with fds attached (SCM_RIGHTS) in one sendmsg; returns the bytes sent.
Napi::Value SendWithFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ToFd(info, 0, &fd)) return env.Undefined();
  if (info.Length() < 3 || !info[1].IsBuffer() || !info[2].IsArray()) {
    Napi::TypeError::New(env, "sendWithFds(fd, data: Buffer, fds: number[])").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Buffer<char> data = info[1].As<Napi::Buffer<char>>();
  Napi::Array arr = info[2].As<Napi::Array>();
  std::vector<int> fds(arr.Length());
  if (fds.size() > 253) {
    Napi::RangeError::New(env, "at most 253 fds per message").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  for (uint32_t i = 0; i < arr.Length(); i++) fds[i] = arr.Get(i).As<Napi::Number>().Int32Value();
  struct iovec iov = {data.Data(), data.Length()};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> ctl(CMSG_SPACE(sizeof(int) * fds.size()));
  if (!fds.empty()) {
    msg.msg_control = ctl.data();
    msg.msg_controllen = ctl.size();
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = sendmsg(fd, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ThrowErrno(env, "sendmsg", errno);
  return Napi::Number::New(env, static_cast<double>(n));
}

// Non-blocking receive of one message and its fds (MSG_CMSG_CLOEXEC). null when nothing is
// queued (EAGAIN).
Napi::Value RecvWithFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ToFd(info, 0, &fd)) return env.Undefined();
  if (info.Length() < 3 || !info[1].IsNumber() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "recvWithFds(fd, maxBytes, maxFds)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  size_t max_bytes = info[1].As<Napi::Number>().Uint32Value();
  size_t max_fds = info[2].As<Napi::Number>().Uint32Value();
  if (max_bytes == 0 || max_bytes > (16u << 20) || max_fds > 253) {
    Napi::RangeError::New(env, "maxBytes must be 1..16 MiB, maxFds 0..253").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::vector<char> buf(max_bytes);
  std::vector<char> ctl(CMSG_SPACE(sizeof(int) * (max_fds ? max_fds : 1)));
  struct iovec iov = {buf.data(), buf.size()};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctl.data();
  msg.msg_controllen = ctl.size();
  ssize_t n;
  do {
    n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return env.Null();
  if (n < 0) return ThrowErrno(env, "recvmsg", errno);
  std::vector<int> fds;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const int* in = reinterpret_cast<const int*>(CMSG_DATA(c));
    for (size_t i = 0; i < count; i++) fds.push_back(in[i]);
  }
  if (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) {
    for (int f : fds) close(f);
    return ThrowErrno(env, "recvmsg (message or fds truncated)", EMSGSIZE);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("data", Napi::Buffer<char>::Copy(env, buf.data(), static_cast<size_t>(n)));
  Napi::Array arr = Napi::Array::New(env, fds.size());
  for (size_t i = 0; i < fds.size(); i++) arr.Set(i, Napi::Number::New(env, fds[i]));
  out.Set("fds", arr);
  return out;
}

// [a, b]: a connected SOCK_SEQPACKET pair, both close-on-exec (hand b to a child as fd 3).
Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return ThrowErrno(env, "socketpair", errno);
  Napi::Array arr = Napi::Array::New(env, 2);
  arr.Set(0u, Napi::Number::New(env, sv[0]));
  arr.Set(1u, Napi::Number::New(env, sv[1]));
  return arr;
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ToFd(info, 0, &fd)) return env.Undefined();
  if (close(fd) < 0 && errno != EINTR) return ThrowErrno(env, "close", errno);
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("getPeerCredentials", Napi::Function::New(env, GetPeerCredentials));
  exports.Set("sendWithFds", Napi::Function::New(env, SendWithFds));
  exports.Set("recvWithFds", Napi::Function::New(env, RecvWithFds));
  exports.Set("socketPair", Napi::Function::New(env, SocketPair));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  return exports;
}

}  // namespace

NODE_API_MODULE(shifter_native, Init)
