#pragma once
// The HTTP/1.1 layer of `runnel serve`: Boost.Beast's parser and serializer
// over our own socket loop.  One thread per connection (bounded), keep-alive,
// a body limit, read and write timeouts, chunked streaming, and a check for a
// peer that has gone, so that a generation can be cancelled the moment its
// client disconnects.  See docs/server.md for why this design.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace runnel::server {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // the target without its query
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string header(const std::string& lower_name) const;
};

using Headers = std::vector<std::pair<std::string, std::string>>;

// One connection's answer to one request.
class HttpConnection {
 public:
  HttpConnection(int fd, int timeout_ms) : fd_(fd), timeout_ms_(timeout_ms) {}
  // A whole response.  Returns false when it could not be written.
  bool send(int status, std::string_view content_type, std::string_view body,
            const Headers& extra = {});
  // A chunked response (Server-Sent Events), then chunks, then the end.
  // Each returns false once the peer is gone or stopped reading for longer
  // than the timeout; nothing more is written after that.
  bool begin_stream(int status, std::string_view content_type, const Headers& extra = {});
  bool write_chunk(std::string_view data);
  bool end_stream();
  // The peer closed its side (or the connection failed): nobody will read
  // what is written.  Never blocks.
  bool peer_gone() const;
  bool responded() const { return responded_; }
  int fd() const { return fd_; }
  bool keep_alive = true;  // the request asked for it and the response allows it

 private:
  int fd_;
  int timeout_ms_;
  bool responded_ = false;
  bool failed_ = false;
};

// Tells when clients hang up while their requests wait on the engine.  One
// thread polls every watched socket for the peer's close (POLLRDHUP, POLLHUP,
// POLLERR) with no timeout, so a connection that waits costs no wake-ups
// until its client goes (one thread per connection polling on a timer would
// take the CPU from the compute threads on every tick).
class HangupWatcher {
 public:
  HangupWatcher();
  ~HangupWatcher();
  HangupWatcher(const HangupWatcher&) = delete;
  HangupWatcher& operator=(const HangupWatcher&) = delete;

  // Ends the watch it was given by; on_hangup never runs after that.
  class Watch {
   public:
    Watch(HangupWatcher* w, uint64_t id) : w_(w), id_(id) {}
    Watch(Watch&& o) noexcept : w_(o.w_), id_(o.id_) { o.w_ = nullptr; }
    Watch& operator=(Watch&&) = delete;
    ~Watch() {
      if (w_) w_->unwatch(id_);
    }

   private:
    HangupWatcher* w_;
    uint64_t id_;
  };
  // Watches fd: when its peer hangs up, on_hangup runs once, on the watcher's
  // thread (keep it short: it holds the watcher's lock).
  [[nodiscard]] Watch watch(int fd, std::function<void()> on_hangup);

 private:
  void unwatch(uint64_t id);
  void loop();
  void wake();
  struct Entry {
    int fd;
    std::function<void()> on_hangup;
  };
  std::mutex mu_;
  std::map<uint64_t, Entry> entries_;
  uint64_t next_id_ = 1;
  bool stop_ = false;
  int event_fd_ = -1;
  std::thread thread_;
};

using HttpHandler = std::function<void(const HttpRequest&, HttpConnection&)>;

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;         // 0: any free port (see HttpServer::port)
  size_t max_body = 4u << 20;
  int max_connections = 64;
  int timeout_s = 600;     // read and write timeout of a connection
};

class HttpServer {
 public:
  // Binds and listens; throws runnel::Error naming --host/--port on failure.
  HttpServer(HttpOptions options, HttpHandler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  int port() const { return port_; }
  // Accepts connections until stop(); connections beyond max_connections get
  // 503 at once.
  void run();
  void stop() { stopping_ = true; }
  int open_connections() const { return open_.load(); }

 private:
  void serve(int fd);
  HttpOptions o_;
  HttpHandler handler_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> open_{0};
  std::mutex fds_mu_;
  std::set<int> fds_;  // open connections, ended by the destructor
};

}  // namespace runnel::server
