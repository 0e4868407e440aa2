// The HTTP layer (http.hpp).  Beast parses requests and serializes responses;
// the socket underneath is ours (FdStream), so that every read and write has
// a timeout and a connection can be asked whether its peer is still there.
#include "http.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <cctype>
#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

#include "runnel/error.hpp"

namespace runnel::server {
namespace {

namespace net = boost::asio;
namespace http = boost::beast::http;
using boost::system::error_code;

// Beast's string_view is boost::string_view in Boost 1.74 (Debian 12's
// libboost-dev) and std::string_view from 1.77 on; spell the conversions out
// so the file builds against both.
boost::beast::string_view bsv(std::string_view s) { return {s.data(), s.size()}; }
std::string_view ssv(boost::beast::string_view s) { return {s.data(), s.size()}; }

// A connected socket as Beast's SyncReadStream / SyncWriteStream: each
// read_some / write_some waits at most timeout_ms for the socket.
class FdStream {
 public:
  FdStream(int fd, int timeout_ms) : fd_(fd), timeout_ms_(timeout_ms) {}

  template <class Buffers>
  size_t read_some(const Buffers& buffers, error_code& ec) {
    ec = {};
    for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers); ++it) {
      const net::mutable_buffer b = *it;
      if (b.size() == 0) continue;
      if (!wait(POLLIN, ec)) return 0;
      const ssize_t n = ::recv(fd_, b.data(), b.size(), 0);
      if (n == 0) {
        ec = net::error::eof;
        return 0;
      }
      if (n < 0) {
        ec = error_code(errno, boost::system::system_category());
        return 0;
      }
      return size_t(n);
    }
    return 0;
  }
  template <class Buffers>
  size_t read_some(const Buffers& buffers) {
    error_code ec;
    const size_t n = read_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }

  template <class Buffers>
  size_t write_some(const Buffers& buffers, error_code& ec) {
    ec = {};
    for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers); ++it) {
      const net::const_buffer b = *it;
      if (b.size() == 0) continue;
      if (!wait(POLLOUT, ec)) return 0;
      const ssize_t n = ::send(fd_, b.data(), b.size(), MSG_NOSIGNAL);
      if (n < 0) {
        ec = error_code(errno, boost::system::system_category());
        return 0;
      }
      return size_t(n);
    }
    return 0;
  }
  template <class Buffers>
  size_t write_some(const Buffers& buffers) {
    error_code ec;
    const size_t n = write_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }

 private:
  bool wait(short events, error_code& ec) {
    pollfd p{fd_, events, 0};
    for (;;) {
      const int r = ::poll(&p, 1, timeout_ms_);
      if (r > 0) return true;
      if (r == 0) {
        ec = net::error::timed_out;
        return false;
      }
      if (errno != EINTR) {
        ec = error_code(errno, boost::system::system_category());
        return false;
      }
    }
  }
  int fd_;
  int timeout_ms_;
};

std::string error_body(const std::string& message) {
  return nlohmann::json{{"error",
                         {{"message", message},
                          {"type", "invalid_request_error"},
                          {"param", nullptr},
                          {"code", nullptr}}}}
      .dump();
}

}  // namespace

std::string HttpRequest::header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? std::string() : it->second;
}

bool HttpConnection::send(int status, std::string_view content_type, std::string_view body,
                          const Headers& extra) {
  responded_ = true;
  if (failed_) return false;
  http::response<http::string_body> res;
  res.version(11);
  res.result(unsigned(status));
  res.set(http::field::server, "runnel");
  res.set(http::field::content_type, bsv(content_type));
  for (const auto& [k, v] : extra) res.set(k, v);
  res.keep_alive(keep_alive);
  res.body() = std::string(body);
  res.prepare_payload();
  FdStream s(fd_, timeout_ms_);
  error_code ec;
  http::write(s, res, ec);
  if (ec) failed_ = true, keep_alive = false;
  return !failed_;
}

bool HttpConnection::begin_stream(int status, std::string_view content_type, const Headers& extra) {
  responded_ = true;
  if (failed_) return false;
  http::response<http::empty_body> res;
  res.version(11);
  res.result(unsigned(status));
  res.set(http::field::server, "runnel");
  res.set(http::field::content_type, bsv(content_type));
  res.set(http::field::cache_control, "no-cache");
  for (const auto& [k, v] : extra) res.set(k, v);
  res.keep_alive(keep_alive);
  res.chunked(true);
  http::response_serializer<http::empty_body> sr(res);
  FdStream s(fd_, timeout_ms_);
  error_code ec;
  http::write_header(s, sr, ec);
  if (ec) failed_ = true, keep_alive = false;
  return !failed_;
}

bool HttpConnection::write_chunk(std::string_view data) {
  if (failed_) return false;
  if (data.empty()) return true;  // an empty chunk would end the body
  FdStream s(fd_, timeout_ms_);
  error_code ec;
  net::write(s, http::make_chunk(net::const_buffer(data.data(), data.size())), ec);
  if (ec) failed_ = true, keep_alive = false;
  return !failed_;
}

bool HttpConnection::end_stream() {
  if (failed_) return false;
  FdStream s(fd_, timeout_ms_);
  error_code ec;
  net::write(s, http::make_chunk_last(), ec);
  if (ec) failed_ = true, keep_alive = false;
  return !failed_;
}

HangupWatcher::HangupWatcher() {
  event_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (event_fd_ < 0) throw Error(fmt::format("runnel serve: eventfd: {}", std::strerror(errno)));
  thread_ = std::thread([this] { loop(); });
}

HangupWatcher::~HangupWatcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake();
  thread_.join();
  ::close(event_fd_);
}

HangupWatcher::Watch HangupWatcher::watch(int fd, std::function<void()> on_hangup) {
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = next_id_++;
    entries_.emplace(id, Entry{fd, std::move(on_hangup)});
  }
  wake();
  return Watch(this, id);
}

void HangupWatcher::unwatch(uint64_t id) {
  bool erased;
  {
    std::lock_guard<std::mutex> lock(mu_);
    erased = entries_.erase(id) > 0;
  }
  // The poll may still hold the socket, which its owner may close and the
  // system reuse: an event on it finds no entry and only rebuilds the set.
  if (erased) wake();
}

void HangupWatcher::wake() {
  const uint64_t one = 1;
  // A full counter (impossible in practice) still leaves the eventfd readable.
  [[maybe_unused]] const ssize_t n = ::write(event_fd_, &one, sizeof one);
}

void HangupWatcher::loop() {
  std::vector<pollfd> fds;
  std::vector<uint64_t> ids;
  for (;;) {
    fds.assign(1, pollfd{event_fd_, POLLIN, 0});
    ids.assign(1, 0);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      for (const auto& [id, e] : entries_) {
        fds.push_back(pollfd{e.fd, short(POLLRDHUP), 0});
        ids.push_back(id);
      }
    }
    // POLLIN is not asked for: a pipelined request makes a socket readable
    // without its peer having gone.  POLLHUP and POLLERR always report.
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno != EINTR) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    if (fds[0].revents & POLLIN) {
      uint64_t v;
      [[maybe_unused]] const ssize_t n = ::read(event_fd_, &v, sizeof v);
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 1; i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) continue;
      auto it = entries_.find(ids[i]);  // ids are never reused: found is the same socket
      if (it == entries_.end()) continue;
      std::function<void()> fn = std::move(it->second.on_hangup);
      entries_.erase(it);
      if (fn) fn();
    }
  }
}

bool HttpConnection::peer_gone() const {
  if (failed_) return true;
  pollfd p{fd_, short(POLLIN | POLLRDHUP), 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return true;
  if (p.revents & POLLIN) {
    // Readable: either a pipelined request (still there) or end of stream.
    char c;
    const ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
  }
  return false;
}

// After an answer sent before the whole request was read (413): stop writing
// and read what the client is still sending, for a bounded time and size, so
// that closing does not reset the connection before it has read the answer.
static void linger_close(int fd) {
  ::shutdown(fd, SHUT_WR);
  char sink[16384];
  size_t total = 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (total < (size_t(64) << 20) && std::chrono::steady_clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    const ssize_t n = ::recv(fd, sink, sizeof sink, 0);
    if (n <= 0) return;
    total += size_t(n);
  }
}

HttpServer::HttpServer(HttpOptions options, HttpHandler handler)
    : o_(std::move(options)), handler_(std::move(handler)) {
  if (o_.port < 0 || o_.port > 65535) throw Error(fmt::format("--port: {} is not a TCP port", o_.port));
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(o_.port);
  if (const int e = ::getaddrinfo(o_.host.c_str(), port.c_str(), &hints, &res); e != 0)
    throw Error(fmt::format("--host: cannot resolve \"{}\": {}", o_.host, ::gai_strerror(e)));
  std::string why = "no address";
  for (addrinfo* a = res; a; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 256) == 0) {
      listen_fd_ = fd;
      break;
    }
    why = std::strerror(errno);
    ::close(fd);
  }
  ::freeaddrinfo(res);
  if (listen_fd_ < 0)
    throw Error(fmt::format("--host/--port: cannot listen on {}:{}: {}", o_.host, o_.port, why));
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len);
  port_ = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                   : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

HttpServer::~HttpServer() {
  stopping_ = true;
  if (listen_fd_ >= 0) ::close(listen_fd_);
  // Idle keep-alive connections would wait out their read timeout: end them
  // (a response being streamed sees its next write fail and cancels).
  {
    std::lock_guard<std::mutex> lock(fds_mu_);
    for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
  }
  // Connection threads hold references to this object: wait for them.
  while (open_.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

void HttpServer::run() {
  while (!stopping_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (open_.load() >= o_.max_connections) {
      HttpConnection c(fd, 1000);
      c.keep_alive = false;
      c.send(503, "application/json", error_body("the server is at its connection limit"),
             {{"Retry-After", "1"}});
      ::close(fd);
      continue;
    }
    ++open_;
    {
      std::lock_guard<std::mutex> lock(fds_mu_);
      fds_.insert(fd);
    }
    std::thread([this, fd] {
      try {
        serve(fd);
      } catch (...) {
      }
      {
        std::lock_guard<std::mutex> lock(fds_mu_);
        fds_.erase(fd);
        ::close(fd);
      }
      --open_;
    }).detach();
  }
}

void HttpServer::serve(int fd) {
  const int timeout_ms = o_.timeout_s * 1000;
  FdStream s(fd, timeout_ms);
  boost::beast::flat_buffer buf;
  while (!stopping_) {
    http::request_parser<http::string_body> p;
    p.header_limit(64 * 1024);
    p.body_limit(o_.max_body);
    error_code ec;
    http::read_header(s, buf, p, ec);
    HttpConnection conn(fd, timeout_ms);
    if (ec == http::error::body_limit) {  // a Content-Length over the limit
      conn.keep_alive = false;
      conn.send(413, "application/json",
                error_body(fmt::format("the request body of {} bytes exceeds --max-body ({} bytes)",
                                       p.content_length().value_or(0), o_.max_body)));
      linger_close(fd);
      return;
    }
    if (ec) {
      if (ec != http::error::end_of_stream && ec != net::error::eof &&
          ec != net::error::timed_out && ec != net::error::connection_reset) {
        conn.keep_alive = false;
        conn.send(400, "application/json", error_body("malformed HTTP request: " + ec.message()));
      }
      return;
    }
    if (const auto len = p.content_length(); len && *len > o_.max_body) {
      conn.keep_alive = false;
      conn.send(413, "application/json",
                error_body(fmt::format("the request body of {} bytes exceeds --max-body ({} bytes)",
                                       *len, o_.max_body)));
      linger_close(fd);
      return;
    }
    const auto& hdr = p.get();
    if (boost::beast::iequals(hdr[http::field::expect], "100-continue")) {
      static constexpr char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
      net::write(s, net::buffer(cont, sizeof cont - 1), ec);
      if (ec) return;
    }
    http::read(s, buf, p, ec);
    if (ec == http::error::body_limit) {
      conn.keep_alive = false;
      conn.send(413, "application/json",
                error_body(fmt::format("the request body exceeds --max-body ({} bytes)", o_.max_body)));
      linger_close(fd);
      return;
    }
    if (ec) {
      if (ec != net::error::eof && ec != net::error::timed_out) {
        conn.keep_alive = false;
        conn.send(400, "application/json", error_body("malformed HTTP request: " + ec.message()));
      }
      return;
    }
    auto msg = p.release();
    HttpRequest req;
    req.method = std::string(ssv(msg.method_string()));
    const std::string_view target = ssv(msg.target());
    req.path = std::string(target.substr(0, target.find('?')));
    for (const auto& f : msg) {
      std::string name(ssv(f.name_string()));
      for (char& ch : name) ch = char(std::tolower(static_cast<unsigned char>(ch)));
      req.headers[name] = std::string(ssv(f.value()));
    }
    req.body = std::move(msg.body());
    conn.keep_alive = msg.keep_alive();
    handler_(req, conn);
    if (!conn.responded()) conn.send(500, "application/json", error_body("no response"));
    if (!conn.keep_alive) return;
  }
}

}  // namespace runnel::server
