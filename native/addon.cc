// shifter_native.node: the few socket calls Node has no API for. Each function is one syscall
// sequence; every fd it creates is close-on-exec. Errors throw with the syscall and errno text.
#include <napi.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

namespace
{

Napi::Value ThrowErrno(Napi::Env env, const char *what, int err)
{
	Napi::Error e = Napi::Error::New(env, std::string(what) + ": " + strerror(err));
	e.Set("errno", Napi::Number::New(env, err));
	e.Set("syscall", Napi::String::New(env, what));
	e.ThrowAsJavaScriptException();
	return env.Undefined();
}

bool ToFd(const Napi::CallbackInfo &info, size_t i, int *fd)
{
	if (info.Length() <= i || !info[i].IsNumber()) {
		Napi::TypeError::New(info.Env(), "expected a file descriptor number").ThrowAsJavaScriptException();
		return false;
	}
	*fd = info[i].As<Napi::Number>().Int32Value();
	return true;
}

// { pid, uid, gid, groups } of the peer of a connected unix socket, from the kernel.
Napi::Value GetPeerCredentials(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	int fd;
	if (!ToFd(info, 0, &fd))
		return env.Undefined();
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return ThrowErrno(env, "SO_PEERCRED", errno);
	std::vector<gid_t> groups(64);
	socklen_t glen = groups.size() * sizeof(gid_t);
	while (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &glen) < 0) {
		if (errno != ERANGE || glen <= groups.size() * sizeof(gid_t))
			return ThrowErrno(env, "SO_PEERGROUPS", errno);
		groups.resize(glen / sizeof(gid_t));
	}
	groups.resize(glen / sizeof(gid_t));
	Napi::Object out = Napi::Object::New(env);
	out.Set("pid", Napi::Number::New(env, cred.pid));
	out.Set("uid", Napi::Number::New(env, cred.uid));
	out.Set("gid", Napi::Number::New(env, cred.gid));
	Napi::Array arr = Napi::Array::New(env, groups.size());
	for (size_t i = 0; i < groups.size(); i++)
		arr.Set(i, Napi::Number::New(env, groups[i]));
	out.Set("groups", arr);
	return out;
}

// Sends data with fds attached (SCM_RIGHTS) in one sendmsg; returns the bytes sent.
Napi::Value SendWithFds(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	int fd;
	if (!ToFd(info, 0, &fd))
		return env.Undefined();
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
	for (uint32_t i = 0; i < arr.Length(); i++)
		fds[i] = arr.Get(i).As<Napi::Number>().Int32Value();
	struct iovec iov = { data.Data(), data.Length() };
	struct msghdr msg = {};
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	std::vector<char> ctl(CMSG_SPACE(sizeof(int) * fds.size()));
	if (!fds.empty()) {
		msg.msg_control = ctl.data();
		msg.msg_controllen = ctl.size();
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
		memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
	}
	ssize_t n;
	do {
		n = sendmsg(fd, &msg, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return ThrowErrno(env, "sendmsg", errno);
	return Napi::Number::New(env, static_cast<double>(n));
}

// Non-blocking receive of one message and its fds (MSG_CMSG_CLOEXEC). null when nothing is
// queued (EAGAIN).
Napi::Value RecvWithFds(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	int fd;
	if (!ToFd(info, 0, &fd))
		return env.Undefined();
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
	struct iovec iov = { buf.data(), buf.size() };
	struct msghdr msg = {};
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = ctl.data();
	msg.msg_controllen = ctl.size();
	ssize_t n;
	do {
		n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return env.Null();
	if (n < 0)
		return ThrowErrno(env, "recvmsg", errno);
	std::vector<int> fds;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		const int *in = reinterpret_cast<const int *>(CMSG_DATA(c));
		for (size_t i = 0; i < count; i++)
			fds.push_back(in[i]);
	}
	if (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) {
		for (int f : fds)
			close(f);
		return ThrowErrno(env, "recvmsg (message or fds truncated)", EMSGSIZE);
	}
	Napi::Object out = Napi::Object::New(env);
	out.Set("data", Napi::Buffer<char>::Copy(env, buf.data(), static_cast<size_t>(n)));
	Napi::Array arr = Napi::Array::New(env, fds.size());
	for (size_t i = 0; i < fds.size(); i++)
		arr.Set(i, Napi::Number::New(env, fds[i]));
	out.Set("fds", arr);
	return out;
}

// [a, b]: a connected SOCK_SEQPACKET pair, both close-on-exec (hand b to a child as fd 3).
Napi::Value SocketPair(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return ThrowErrno(env, "socketpair", errno);
	Napi::Array arr = Napi::Array::New(env, 2);
	arr.Set(0u, Napi::Number::New(env, sv[0]));
	arr.Set(1u, Napi::Number::New(env, sv[1]));
	return arr;
}

Napi::Value CloseFd(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	int fd;
	if (!ToFd(info, 0, &fd))
		return env.Undefined();
	if (close(fd) < 0 && errno != EINTR)
		return ThrowErrno(env, "close", errno);
	return env.Undefined();
}

// A memfd holding the bytes, read from offset 0: how a request body of any size
// reaches the namespace helper without a pipe to feed.
Napi::Value MemfdFromBuffer(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	if (info.Length() < 1 || !info[0].IsBuffer()) {
		Napi::TypeError::New(env, "memfdFromBuffer(buffer)").ThrowAsJavaScriptException();
		return env.Undefined();
	}
	Napi::Buffer<char> buf = info[0].As<Napi::Buffer<char>>();
	int fd = memfd_create("shifter-request", MFD_CLOEXEC);
	if (fd < 0)
		return ThrowErrno(env, "memfd_create", errno);
	for (size_t off = 0; off < buf.Length();) {
		ssize_t n = write(fd, buf.Data() + off, buf.Length() - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = errno;
			close(fd);
			return ThrowErrno(env, "write memfd", err);
		}
		off += static_cast<size_t>(n);
	}
	if (lseek(fd, 0, SEEK_SET) < 0) {
		int err = errno;
		close(fd);
		return ThrowErrno(env, "lseek memfd", err);
	}
	return Napi::Number::New(env, fd);
}

// One wait for an fd to become readable (or hung up) on Node's own event loop, without a
// thread: waitReadable(fd, callback) -> id calls callback() once; cancelWait(id) drops it.
// Waits live in a table keyed by id (main thread only), so a late cancel is harmless.
struct ReadableWait {
	uv_poll_t poll;
	uint32_t id;
	Napi::FunctionReference callback;
};

std::unordered_map<uint32_t, ReadableWait *> waits;
uint32_t next_wait_id = 1;

void FinishWait(ReadableWait *w)
{
	waits.erase(w->id);
	uv_poll_stop(&w->poll);
	uv_close(reinterpret_cast<uv_handle_t *>(&w->poll),
	         [](uv_handle_t *h) { delete static_cast<ReadableWait *>(h->data); });
}

Napi::Value WaitReadable(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	int fd;
	if (!ToFd(info, 0, &fd))
		return env.Undefined();
	if (info.Length() < 2 || !info[1].IsFunction()) {
		Napi::TypeError::New(env, "waitReadable(fd, callback)").ThrowAsJavaScriptException();
		return env.Undefined();
	}
	uv_loop_t *loop = nullptr;
	if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop)
		return ThrowErrno(env, "napi_get_uv_event_loop", EINVAL);
	auto *w = new ReadableWait();
	w->poll.data = w;
	int rc = uv_poll_init(loop, &w->poll, fd);
	if (rc < 0) {
		delete w;
		return ThrowErrno(env, "uv_poll_init", -rc);
	}
	rc = uv_poll_start(&w->poll, UV_READABLE | UV_DISCONNECT, [](uv_poll_t *p, int, int) {
		auto *w = static_cast<ReadableWait *>(p->data);
		Napi::Env env = w->callback.Env();
		Napi::HandleScope scope(env);
		Napi::FunctionReference cb = std::move(w->callback);
		FinishWait(w);
		cb.MakeCallback(env.Global(), {});
	});
	if (rc < 0) {
		uv_close(reinterpret_cast<uv_handle_t *>(&w->poll),
		         [](uv_handle_t *h) { delete static_cast<ReadableWait *>(h->data); });
		return ThrowErrno(env, "uv_poll_start", -rc);
	}
	w->callback = Napi::Persistent(info[1].As<Napi::Function>());
	w->id = next_wait_id++;
	waits[w->id] = w;
	return Napi::Number::New(env, w->id);
}

Napi::Value CancelWait(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	if (info.Length() < 1 || !info[0].IsNumber()) {
		Napi::TypeError::New(env, "cancelWait(id)").ThrowAsJavaScriptException();
		return env.Undefined();
	}
	auto it = waits.find(info[0].As<Napi::Number>().Uint32Value());
	if (it != waits.end())
		FinishWait(it->second);
	return env.Undefined();
}

// notifyDatagram(path, message): one datagram to a unix socket, sd_notify(3)'s wire protocol
// (Node has no unix datagram sockets). A path starting with '@' names an abstract socket.
Napi::Value NotifyDatagram(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
		Napi::TypeError::New(env, "notifyDatagram(path: string, message: string)").ThrowAsJavaScriptException();
		return env.Undefined();
	}
	std::string path = info[0].As<Napi::String>().Utf8Value();
	std::string message = info[1].As<Napi::String>().Utf8Value();
	struct sockaddr_un addr = {};
	addr.sun_family = AF_UNIX;
	if (path.empty() || path.size() >= sizeof(addr.sun_path) || path.find('\0') != std::string::npos) {
		Napi::RangeError::New(env, "notify socket path is empty, too long or has a NUL byte")
			.ThrowAsJavaScriptException();
		return env.Undefined();
	}
	memcpy(addr.sun_path, path.data(), path.size());
	if (path[0] == '@')
		addr.sun_path[0] = '\0';
	else if (path[0] != '/') {
		Napi::RangeError::New(env, "notify socket path must be absolute or start with '@'")
			.ThrowAsJavaScriptException();
		return env.Undefined();
	}
	socklen_t len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + path.size());
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return ThrowErrno(env, "socket", errno);
	ssize_t n;
	do {
		n = sendto(fd, message.data(), message.size(), MSG_NOSIGNAL, reinterpret_cast<struct sockaddr *>(&addr),
		           len);
	} while (n < 0 && errno == EINTR);
	int err = errno;
	if (close(fd) < 0 && errno != EINTR && n >= 0)
		return ThrowErrno(env, "close", errno);
	if (n < 0)
		return ThrowErrno(env, "sendto", err);
	if (static_cast<size_t>(n) != message.size())
		return ThrowErrno(env, "sendto (short datagram)", EMSGSIZE);
	return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports)
{
	exports.Set("memfdFromBuffer", Napi::Function::New(env, MemfdFromBuffer));
	exports.Set("waitReadable", Napi::Function::New(env, WaitReadable));
	exports.Set("cancelWait", Napi::Function::New(env, CancelWait));
	exports.Set("getPeerCredentials", Napi::Function::New(env, GetPeerCredentials));
	exports.Set("sendWithFds", Napi::Function::New(env, SendWithFds));
	exports.Set("recvWithFds", Napi::Function::New(env, RecvWithFds));
	exports.Set("socketPair", Napi::Function::New(env, SocketPair));
	exports.Set("closeFd", Napi::Function::New(env, CloseFd));
	exports.Set("notifyDatagram", Napi::Function::New(env, NotifyDatagram));
	return exports;
}

} // namespace

NODE_API_MODULE(shifter_native, Init)
