// An example planner under test in C++: follows its route at the speed limit and brakes for the
// nearest road user ahead in its corridor (IDM). It serves drivetwin's planner protocol v1
// (proto/drivetwin/planner/v1/planner.proto) and answers continuous or trajectory actions, over
// gRPC (on the Session stream, the twin's lock-step path, and on the unary rpcs alike) or over
// the lock-step frames transport (harness/remote/frames.py: the same SessionRequest/SessionReply
// messages, each after a 4-byte big-endian length, on a Unix-domain or TCP stream socket; this
// path uses protobuf only, no gRPC). Both transports answer with the same RouteFollower.
//
//   ./cpp_planner --port 50051 [--host 127.0.0.1] [--unary-only]    gRPC
//   ./cpp_planner --socket /run/planner.sock                         frames, Unix socket
//   ./cpp_planner --frames-port 50052 [--host 127.0.0.1]             frames, TCP (0: a free port)
//
// --unary-only answers Session UNIMPLEMENTED, as a planner written against the unary rpcs only:
// the twin then sends one unary call per step. The Session call answers describe too.
//
// Frames: each connection (one session stream) is served on a thread of its own; a frame over
// 64 MiB, one that is not a SessionRequest or one that carries no request is answered with a
// SessionReply.end (INVALID_ARGUMENT, saying why) and the connection is closed; an exception
// while serving one (out of memory) ends that connection (INTERNAL), not the planner. A
// connection's buffer grows with the bytes that arrive, not with the length a header announces.
// A connection that ends frees the episodes it reset. SIGTERM and SIGINT remove the socket file.
//
// In a suite: [policy] command = "build/cpp_planner/cpp_planner --port {port}" (gRPC) or
// "build/cpp_planner/cpp_planner --socket {socket}" (frames); a running one is reached with
// [policy] address = "unix+frames:///run/planner.sock" or "tcp+frames://host:port".

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "drivetwin/planner/v1/planner.grpc.pb.h"

namespace pl = drivetwin::planner::v1;

namespace {

constexpr uint32_t kProtocolVersion = 1;
constexpr double kDefaultSpeed = 13.9;  // [m/s] when the route has no speed limit
constexpr double kAMax = 2.0, kBComf = 3.0, kS0 = 2.0, kHeadway = 1.5;  // IDM
constexpr double kCorridorMargin = 0.4;  // [m]

// What a session stream answers a request that carries no request.
constexpr const char* kNoRequest = "a SessionRequest carries none of reset, step, close, describe";

struct Episode {
  pl::ActionType action_type = pl::ACTION_TYPE_UNSPECIFIED;
  uint32_t k_points = 0;        // trajectory waypoints
  double dt = 0.1;              // [s]
  double v0 = kDefaultSpeed;    // desired speed [m/s]
  double wheelbase = 2.8, length = 4.6, width = 1.9, max_accel = 4.0, max_decel = 9.0, max_steer = 0.6;
  std::vector<double> rx, ry, rs;  // route points (local frame) and arc length [m]
};

// Arc-length position (x, y) on the route at s [m] (straight on beyond its end).
void RouteAt(const Episode& e, double s, double* x, double* y) {
  const size_t n = e.rs.size();
  if (n == 1) { *x = e.rx[0] + s; *y = e.ry[0]; return; }
  size_t i = std::upper_bound(e.rs.begin(), e.rs.end(), s) - e.rs.begin();
  i = std::min(std::max<size_t>(i, 1), n - 1);
  const double seg = std::max(e.rs[i] - e.rs[i - 1], 1e-9);
  const double t = (s - e.rs[i - 1]) / seg;  // may exceed 1 past the end: extrapolate
  *x = e.rx[i - 1] + t * (e.rx[i] - e.rx[i - 1]);
  *y = e.ry[i - 1] + t * (e.ry[i] - e.ry[i - 1]);
}

// Arc length [m] of the route point nearest (x, y).
double Project(const Episode& e, double x, double y) {
  double best = 1e300, s_best = 0.0;
  for (size_t i = 0; i + 1 < e.rs.size(); ++i) {
    const double dx = e.rx[i + 1] - e.rx[i], dy = e.ry[i + 1] - e.ry[i];
    const double len2 = std::max(dx * dx + dy * dy, 1e-12);
    const double t = std::clamp(((x - e.rx[i]) * dx + (y - e.ry[i]) * dy) / len2, 0.0, 1.0);
    const double ex = e.rx[i] + t * dx - x, ey = e.ry[i] + t * dy - y;
    const double d2 = ex * ex + ey * ey;
    if (d2 < best) { best = d2; s_best = e.rs[i] + t * (e.rs[i + 1] - e.rs[i]); }
  }
  return s_best;
}

// IDM acceleration [m/s2] for the nearest road user ahead of the ego along the route.
double IdmAccel(const Episode& e, const pl::Observation& obs, double s_ego) {
  const auto& ego = obs.ego();
  const double speed = std::max(ego.speed(), 0.0);
  double gap = 1e300, lead_speed = 0.0;
  const auto& a = obs.agents();
  for (int i = 0; i < a.x_size(); ++i) {
    const double s = Project(e, a.x(i), a.y(i));
    if (s <= s_ego) continue;
    double px, py;
    RouteAt(e, s, &px, &py);
    const double lateral = std::hypot(a.x(i) - px, a.y(i) - py);
    if (lateral > 0.5 * a.width(i) + 0.5 * e.width + kCorridorMargin) continue;
    const double g = s - s_ego - 0.5 * a.length(i) - 0.5 * e.length;
    if (g < gap) {
      gap = g;
      lead_speed = a.vx(i) * std::cos(ego.yaw()) + a.vy(i) * std::sin(ego.yaw());
    }
  }
  const double free_term = 1.0 - std::pow(speed / e.v0, 4);
  if (gap > 1e299) return kAMax * free_term;
  const double closing = speed - lead_speed;
  const double s_star = kS0 + speed * kHeadway + speed * closing / (2.0 * std::sqrt(kAMax * kBComf));
  return kAMax * (free_term - std::pow(std::max(s_star, 0.0) / std::max(gap, 0.1), 2));
}

// The planner, transport-free (protobuf messages in, protobuf messages out): the gRPC service
// and the frames connections both call it. Episodes are kept per session id; each remembers which
// stream reset it last (its owner: 0 for gRPC, a frames connection's number), so a frames
// connection that ends frees the sessions it owns, as the Python server frees a Session call's.
class RouteFollower {
 public:
  static constexpr uint64_t kGrpcOwner = 0;

  void Describe(const pl::DescribeRequest&, pl::PlannerInfo* info) {
    info->set_status(pl::STATUS_OK);
    info->set_name("cpp_route_follower");
    info->set_protocol_version(kProtocolVersion);
    info->add_action_types(pl::ACTION_TYPE_CONTINUOUS);
    info->add_action_types(pl::ACTION_TYPE_TRAJECTORY);
  }

  void Reset(const pl::ScenarioInit* init, pl::ResetReply* reply, uint64_t owner) {
    reply->set_t_us(init->t_us());
    reply->set_planner_name("cpp_route_follower");
    reply->set_protocol_version(kProtocolVersion);
    const auto type = init->action().type();
    if (init->protocol_version() != kProtocolVersion) {
      reply->set_status(pl::STATUS_ERROR);
      reply->set_message("protocol version " + std::to_string(init->protocol_version()) + " is not served");
      return;
    }
    if (type != pl::ACTION_TYPE_CONTINUOUS && type != pl::ACTION_TYPE_TRAJECTORY) {
      reply->set_status(pl::STATUS_ERROR);
      reply->set_message("cpp_route_follower answers continuous or trajectory actions only");
      return;
    }
    Episode e;
    e.action_type = type;
    e.k_points = init->action().shape_size() ? init->action().shape(0) : 0;
    e.dt = init->dt_s();
    e.v0 = std::isfinite(init->speed_limit()) && init->speed_limit() > 0 ? init->speed_limit() : kDefaultSpeed;
    const auto& v = init->vehicle();
    e.wheelbase = v.wheelbase(); e.length = v.length(); e.width = v.width();
    e.max_accel = v.max_accel(); e.max_decel = v.max_decel(); e.max_steer = v.max_steer();
    const auto& xy = init->route().xy();
    for (int i = 0; i + 1 < xy.size(); i += 2) {
      const double x = xy[i], y = xy[i + 1];
      e.rs.push_back(e.rx.empty() ? 0.0 : e.rs.back() + std::hypot(x - e.rx.back(), y - e.ry.back()));
      e.rx.push_back(x);
      e.ry.push_back(y);
    }
    if (e.rx.empty()) {
      reply->set_status(pl::STATUS_ERROR);
      reply->set_message("the ScenarioInit has no route");
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    episodes_[init->session()] = Owned{std::move(e), owner};
    reply->set_status(pl::STATUS_OK);
  }

  void Step(const pl::Observation* obs, pl::Command* cmd) {
    cmd->set_t_us(obs->t_us());
    Episode e;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = episodes_.find(obs->session());
      if (it == episodes_.end()) {
        cmd->set_status(pl::STATUS_ERROR);
        cmd->set_message("no episode in this session: Reset first");
        return;
      }
      e = it->second.episode;
    }
    const auto& ego = obs->ego();
    const double s_ego = Project(e, ego.x(), ego.y());
    const double accel = std::clamp(IdmAccel(e, *obs, s_ego), -e.max_decel, e.max_accel);
    const double c = std::cos(ego.yaw()), s = std::sin(ego.yaw());
    if (e.action_type == pl::ACTION_TYPE_TRAJECTORY) {
      // waypoints along the route at the distances the IDM speed profile covers, ego frame
      double v = std::max(ego.speed(), 0.0), dist = 0.0;
      auto* traj = cmd->mutable_trajectory();
      for (uint32_t k = 1; k <= e.k_points; ++k) {
        v = std::max(v + accel * e.dt, 0.0);
        dist += v * e.dt;
        double px, py;
        RouteAt(e, s_ego + dist, &px, &py);
        const double dx = px - ego.x(), dy = py - ego.y();
        traj->add_xy(static_cast<float>(dx * c + dy * s));
        traj->add_xy(static_cast<float>(-dx * s + dy * c));
      }
    } else {
      // pure pursuit from the rear axle to the route point a speed-dependent distance ahead
      const double look = std::clamp(0.6 * std::max(ego.speed(), 0.0), 4.0, 18.0);
      double px, py;
      RouteAt(e, s_ego + look, &px, &py);
      const double rear_x = ego.x() - 0.5 * e.wheelbase * c, rear_y = ego.y() - 0.5 * e.wheelbase * s;
      const double dx = px - rear_x, dy = py - rear_y;
      const double lx = dx * c + dy * s, ly = -dx * s + dy * c;
      const double d2 = std::max(lx * lx + ly * ly, 1e-6);
      const double steer = std::atan(2.0 * e.wheelbase * ly / d2);
      const double a = accel >= 0 ? accel / e.max_accel : accel / e.max_decel;
      cmd->mutable_continuous()->set_accel(static_cast<float>(std::clamp(a, -1.0, 1.0)));
      cmd->mutable_continuous()->set_steer(static_cast<float>(std::clamp(steer / e.max_steer, -1.0, 1.0)));
    }
    cmd->set_status(pl::STATUS_OK);
  }

  void Close(const pl::CloseRequest* req, pl::CloseReply* reply) {
    std::lock_guard<std::mutex> lock(mu_);
    episodes_.erase(req->session());
    reply->set_status(pl::STATUS_OK);
    reply->set_t_us(req->t_us());
  }

  // One message of a session stream answered by the handler of its kind (into a cleared
  // *reply); false when the request carries none of them.
  bool Answer(const pl::SessionRequest& request, pl::SessionReply* reply, uint64_t owner) {
    switch (request.request_case()) {
      case pl::SessionRequest::kReset: Reset(&request.reset(), reply->mutable_reset(), owner); return true;
      case pl::SessionRequest::kStep: Step(&request.step(), reply->mutable_step()); return true;
      case pl::SessionRequest::kClose: Close(&request.close(), reply->mutable_close()); return true;
      case pl::SessionRequest::kDescribe: Describe(request.describe(), reply->mutable_describe()); return true;
      default: return false;
    }
  }

  // Frees the episodes that `owner` reset last (its stream ended).
  void Forget(uint64_t owner) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = episodes_.begin(); it != episodes_.end();) {
      it = it->second.owner == owner ? episodes_.erase(it) : std::next(it);
    }
  }

 private:
  struct Owned {
    Episode episode;
    uint64_t owner = kGrpcOwner;
  };
  std::mutex mu_;
  std::map<std::string, Owned> episodes_;
};

// --- the frames transport: protobuf on a stream socket, no gRPC -------------------------------

constexpr uint32_t kMaxFrameBytes = 64u << 20;  // the largest frame either side accepts (frames.py)
constexpr size_t kHeaderBytes = 4;               // a frame's length: unsigned 32-bit, big-endian
constexpr size_t kChunkBytes = 64u << 10;        // what one read asks for
constexpr size_t kMaxDetailsBytes = 4u << 10;   // a SessionEnd's details are cut here (frames.py)
constexpr uint32_t kInvalidArgument = 3, kResourceExhausted = 8, kInternal = 13;  // gRPC status codes for SessionEnd

// One frames connection: reads frames through a buffer (one read() per frame when it arrives
// whole), writes each frame with one send() (more only when the kernel takes part of it).
class FrameConn {
 public:
  enum class Read { kFrame, kEnd, kTooLong, kBroken };

  explicit FrameConn(int fd) : fd_(fd), buf_(kChunkBytes) {}
  ~FrameConn() { ::close(fd_); }
  FrameConn(const FrameConn&) = delete;
  FrameConn& operator=(const FrameConn&) = delete;

  // The next frame: kFrame with its payload in [*data, *data + *size) (valid until the next call),
  // kEnd when the peer ended the stream between frames, kTooLong when the announced length
  // (*size) is over kMaxFrameBytes, kBroken when the stream failed or ended inside a frame
  // (*error says which).
  Read Next(const char** data, uint32_t* size, std::string* error) {
    if (begin_ == end_) {
      begin_ = end_ = 0;
      // The last frame is done with (its payload was valid until this call): if it was a big
      // one, give its memory back. (Freed before the caller had parsed it, it crashed the planner.)
      if (buf_.size() > 4 * kChunkBytes) {
        buf_.assign(kChunkBytes, 0);
        buf_.shrink_to_fit();
      }
    }
    if (!Need(kHeaderBytes, error)) return end_ == begin_ && error->empty() ? Read::kEnd : Read::kBroken;
    const auto* h = reinterpret_cast<const unsigned char*>(buf_.data() + begin_);
    const uint32_t n = (uint32_t{h[0]} << 24) | (uint32_t{h[1]} << 16) | (uint32_t{h[2]} << 8) | uint32_t{h[3]};
    *size = n;
    if (n > kMaxFrameBytes) return Read::kTooLong;
    if (!Need(kHeaderBytes + n, error)) {
      if (error->empty()) *error = "the stream ended inside a frame of " + std::to_string(n) + " bytes";
      return Read::kBroken;
    }
    *data = buf_.data() + begin_ + kHeaderBytes;
    begin_ += kHeaderBytes + n;
    return Read::kFrame;
  }

  // Writes `message` as one frame (header and payload from one buffer); false when the peer is gone.
  bool Send(const google::protobuf::MessageLite& message) {
    const size_t n = message.ByteSizeLong();
    if (n > kMaxFrameBytes) return false;
    out_.resize(kHeaderBytes + n);
    auto* h = reinterpret_cast<unsigned char*>(&out_[0]);
    h[0] = static_cast<unsigned char>(n >> 24); h[1] = static_cast<unsigned char>(n >> 16);
    h[2] = static_cast<unsigned char>(n >> 8); h[3] = static_cast<unsigned char>(n);
    if (!message.SerializeToArray(&out_[kHeaderBytes], static_cast<int>(n))) return false;
    const char* p = out_.data();
    size_t left = out_.size();
    while (left > 0) {
      const ssize_t sent = ::send(fd_, p, left, MSG_NOSIGNAL);
      if (sent < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      p += sent;
      left -= static_cast<size_t>(sent);
    }
    return true;
  }

  // After a last frame: tells the peer that nothing more comes and reads what it still sends
  // (for at most a second): closing with unread bytes would reset the connection, and the peer
  // could lose that last frame.
  void Linger() {
    ::shutdown(fd_, SHUT_WR);
    timeval tv{0, 100000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    char sink[4096];
    while (std::chrono::steady_clock::now() < until) {
      const ssize_t got = ::read(fd_, sink, sizeof(sink));
      if (got == 0 || (got < 0 && errno != EINTR)) break;
    }
  }

 private:
  // Reads until `n` bytes are buffered from begin_ (the buffer grows with what has arrived, so
  // memory follows the bytes received, not the length announced); false (with *error empty: a
  // clean end of the stream) when they do not come.
  bool Need(size_t n, std::string* error) {
    while (end_ - begin_ < n) {
      if (begin_ > 0) {  // keep the frame at the buffer's start
        std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
      }
      // Grow as bytes arrive (doubling, up to n), never straight to the announced length: a
      // header alone must not make the planner allocate (and touch) up to 64 MiB.
      if (end_ == buf_.size()) buf_.resize(std::min(n, 2 * buf_.size()));
      const ssize_t got = ::read(fd_, buf_.data() + end_, buf_.size() - end_);
      if (got < 0) {
        if (errno == EINTR) continue;
        *error = std::strerror(errno);
        return false;
      }
      if (got == 0) {
        if (end_ > begin_ && error->empty() && n == kHeaderBytes) {
          *error = "the stream ended inside a frame's length (" + std::to_string(end_ - begin_) + " of 4 bytes)";
        }
        return false;
      }
      end_ += static_cast<size_t>(got);
    }
    return true;
  }

  const int fd_;
  std::vector<char> buf_;
  size_t begin_ = 0, end_ = 0;  // the unread bytes: buf_[begin_, end_)
  std::string out_;
};

// Ends the session as a failing gRPC call would: a SessionReply.end with the status code and its
// details, then the connection is closed (the caller's FrameConn closes it).
// Details over kMaxDetailsBytes are cut there (at a UTF-8 character's start) and say how long
// they were, as frames.py's cap_details does.
void SendEnd(FrameConn* conn, uint32_t code, const std::string& details) {
  std::string capped = details;
  if (capped.size() > kMaxDetailsBytes) {
    size_t cut = kMaxDetailsBytes;  // at a character's start: the details stay UTF-8
    while (cut > 0 && (static_cast<unsigned char>(capped[cut]) & 0xC0) == 0x80) --cut;
    capped.resize(cut);
    capped += "... (" + std::to_string(details.size()) + " bytes)";
  }
  std::fprintf(stderr, "cpp_planner: frames session ended (code %u): %s\n", code, capped.c_str());
  pl::SessionReply end;
  end.mutable_end()->set_code(code);
  end.mutable_end()->set_details(capped);
  if (conn->Send(end)) conn->Linger();
}

// Answers the requests of one frames connection in turn until it ends (or breaks the framing).
void ServeFrameConn(RouteFollower* planner, FrameConn* conn, uint64_t owner) {
  pl::SessionRequest request;
  pl::SessionReply reply;
  for (;;) {
    const char* data = nullptr;
    uint32_t size = 0;
    std::string error;
    const FrameConn::Read got = conn->Next(&data, &size, &error);
    if (got == FrameConn::Read::kEnd) break;
    if (got == FrameConn::Read::kBroken) {
      std::fprintf(stderr, "cpp_planner: frames connection ended: %s\n", error.c_str());
      break;
    }
    if (got == FrameConn::Read::kTooLong) {
      SendEnd(conn, kInvalidArgument, "a frame of " + std::to_string(size) + " bytes is announced, over the limit of " +
                                           std::to_string(kMaxFrameBytes));
      break;
    }
    if (!request.ParseFromArray(data, static_cast<int>(size))) {
      SendEnd(conn, kInvalidArgument, "a frame of " + std::to_string(size) + " bytes is not a SessionRequest");
      break;
    }
    reply.Clear();
    if (!planner->Answer(request, &reply, owner)) {
      SendEnd(conn, kInvalidArgument, kNoRequest);
      break;
    }
    if (reply.ByteSizeLong() > kMaxFrameBytes) {
      SendEnd(conn, kResourceExhausted, "the reply is over the frames limit of " + std::to_string(kMaxFrameBytes) + " bytes");
      break;
    }
    if (!conn->Send(reply)) break;  // the twin went away
  }
}

// One frames connection, one session stream: each request answered in turn until the twin
// closes it (or breaks the framing); then its sessions are freed.
void ServeFrames(RouteFollower* planner, int fd, uint64_t owner) {
  std::printf("cpp_planner: frames connection opened\n");
  std::fflush(stdout);
  bool owned = false;  // once FrameConn holds fd, its destructor closes it
  try {
    FrameConn conn(fd);
    owned = true;
    try {
      ServeFrameConn(planner, &conn, owner);
    } catch (const std::exception& exc) {  // this connection fails, not the planner
      SendEnd(&conn, kInternal, std::string("the planner failed: ") + exc.what());
    } catch (...) {
      SendEnd(&conn, kInternal, "the planner failed (a non-standard exception)");
    }
  } catch (...) {  // no buffer for the connection, or SendEnd itself failed (out of memory)
    std::fprintf(stderr, "cpp_planner: a frames connection failed\n");
    if (!owned) ::close(fd);
  }
  try {
    planner->Forget(owner);
  } catch (...) {
    std::fprintf(stderr, "cpp_planner: freeing a frames connection's episodes failed\n");
  }
}

// The Unix socket path to remove on SIGTERM/SIGINT (set once before the handlers are installed).
char g_socket_path[sizeof(sockaddr_un::sun_path)] = "";

void RemoveSocketAndExit(int) {
  if (g_socket_path[0] != '\0') ::unlink(g_socket_path);
  ::_exit(0);
}

// A listening Unix-domain stream socket at `path` (a stale socket file nobody serves is replaced);
// -1 with *error on failure.
int ListenUnix(const std::string& path, std::string* error) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    *error = "the socket path '" + path + "' is empty or longer than " + std::to_string(sizeof(addr.sun_path) - 1) + " bytes";
    return -1;
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      *error = path + " exists and is not a socket";
      return -1;
    }
    const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const bool served = probe >= 0 && ::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    const int probe_errno = errno;
    if (probe >= 0) ::close(probe);
    if (served) {
      *error = "a planner already listens on " + path;
      return -1;
    }
    if (probe_errno != ECONNREFUSED) {
      *error = path + " exists and cannot be probed (" + std::strerror(probe_errno) + "); not removing it";
      return -1;
    }
    ::unlink(path.c_str());  // nobody listens: a stale socket
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 64) != 0) {
    *error = std::string("cannot listen on ") + path + ": " + std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

// A listening TCP socket on host:port (port 0: a free one, written to *bound); -1 with *error.
int ListenTcp(const std::string& host, const std::string& port, int* bound, std::string* error) {
  addrinfo hints{}, *found = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) {
    *error = "cannot resolve " + host + ":" + port + ": " + ::gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, 64) != 0) {
      *error = "cannot listen on " + host + ":" + port + ": " + std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(found);
  if (fd < 0) return -1;
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  *bound = ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  return fd;
}

// Accepts frames connections forever, each served on a thread of its own (as gRPC serves each
// Session call); a failed accept (out of descriptors, a connection aborted early) loses that
// connection, not the server.
[[noreturn]] void AcceptFrames(RouteFollower* planner, int listener, bool tcp) {
  uint64_t next_owner = 1;  // 0 is gRPC's
  for (;;) {
    const int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "cpp_planner: accept failed: %s; accepting again in 20 ms\n", std::strerror(errno));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    if (tcp) {
      const int one = 1;  // a small frame goes now, not after an ACK
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    try {
      std::thread(ServeFrames, planner, fd, next_owner++).detach();
    } catch (const std::exception& exc) {  // no thread (out of threads or memory): lose this connection
      std::fprintf(stderr, "cpp_planner: cannot serve a frames connection: %s\n", exc.what());
      ::close(fd);
    }
  }
}

// The gRPC service: every rpc answered by the RouteFollower.
class GrpcPlanner final : public pl::Planner::Service {
 public:
  GrpcPlanner(RouteFollower* planner, bool unary_only) : planner_(planner), unary_only_(unary_only) {}

  grpc::Status Describe(grpc::ServerContext*, const pl::DescribeRequest* req, pl::PlannerInfo* info) override {
    planner_->Describe(*req, info);
    return grpc::Status::OK;
  }

  grpc::Status Reset(grpc::ServerContext*, const pl::ScenarioInit* init, pl::ResetReply* reply) override {
    planner_->Reset(init, reply, RouteFollower::kGrpcOwner);
    return grpc::Status::OK;
  }

  grpc::Status Step(grpc::ServerContext*, const pl::Observation* obs, pl::Command* cmd) override {
    planner_->Step(obs, cmd);
    return grpc::Status::OK;
  }

  grpc::Status Close(grpc::ServerContext*, const pl::CloseRequest* req, pl::CloseReply* reply) override {
    planner_->Close(req, reply);
    return grpc::Status::OK;
  }

  // Every message of the call answered in order by the handler of its kind.
  grpc::Status Session(grpc::ServerContext*,
                       grpc::ServerReaderWriter<pl::SessionReply, pl::SessionRequest>* stream) override {
    if (unary_only_) return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "cpp_planner --unary-only");
    std::printf("cpp_planner: Session call opened\n");
    std::fflush(stdout);
    pl::SessionRequest request;
    pl::SessionReply reply;
    while (stream->Read(&request)) {
      reply.Clear();
      if (!planner_->Answer(request, &reply, RouteFollower::kGrpcOwner)) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, kNoRequest);
      }
      if (!stream->Write(reply)) break;
    }
    return grpc::Status::OK;
  }

 private:
  RouteFollower* const planner_;
  const bool unary_only_;
};

}  // namespace

int main(int argc, char** argv) {
  const char* usage =
      "usage: cpp_planner [--port P] [--host H] [--unary-only]   (gRPC)\n"
      "       cpp_planner --socket PATH                          (frames, Unix socket)\n"
      "       cpp_planner --frames-port P [--host H]             (frames, TCP)\n";
  std::string host = "127.0.0.1", port = "50051", socket_path, frames_port;
  bool unary_only = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--unary-only") == 0) unary_only = true;
    else if (i + 1 < argc && std::strcmp(argv[i], "--port") == 0) port = argv[++i];
    else if (i + 1 < argc && std::strcmp(argv[i], "--host") == 0) host = argv[++i];
    else if (i + 1 < argc && std::strcmp(argv[i], "--socket") == 0) socket_path = argv[++i];
    else if (i + 1 < argc && std::strcmp(argv[i], "--frames-port") == 0) frames_port = argv[++i];
    else {
      std::fprintf(stderr, "cpp_planner: unknown or incomplete argument '%s'\n%s", argv[i], usage);
      return 2;
    }
  }
  if (!socket_path.empty() && !frames_port.empty()) {
    std::fprintf(stderr, "cpp_planner: give --socket or --frames-port, not both\n%s", usage);
    return 2;
  }
  std::signal(SIGPIPE, SIG_IGN);  // a peer gone mid-write is an error from send(), not the planner's end
  RouteFollower planner;
  if (!socket_path.empty() || !frames_port.empty()) {
    if (unary_only) {
      std::fprintf(stderr, "cpp_planner: --unary-only is a gRPC option (frames have no unary calls)\n");
      return 2;
    }
    std::string error;
    int bound = 0;
    const bool tcp = socket_path.empty();
    const int listener = tcp ? ListenTcp(host, frames_port, &bound, &error) : ListenUnix(socket_path, &error);
    if (listener < 0) {
      std::fprintf(stderr, "cpp_planner: %s\n", error.c_str());
      return 1;
    }
    if (!tcp) {
      std::memcpy(g_socket_path, socket_path.c_str(), socket_path.size() + 1);
      std::signal(SIGTERM, RemoveSocketAndExit);
      std::signal(SIGINT, RemoveSocketAndExit);
      std::printf("cpp_planner: serving frames on unix+frames://%s\n", socket_path.c_str());
    } else {
      std::printf("cpp_planner: serving frames on tcp+frames://%s:%d\n", host.c_str(), bound);
    }
    std::fflush(stdout);
    AcceptFrames(&planner, listener, tcp);
  }
  GrpcPlanner service(&planner, unary_only);
  grpc::ServerBuilder builder;
  int bound = 0;
  builder.AddListeningPort(host + ":" + port, grpc::InsecureServerCredentials(), &bound);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound == 0) {
    std::fprintf(stderr, "cpp_planner: cannot listen on %s:%s\n", host.c_str(), port.c_str());
    return 1;
  }
  std::printf("cpp_planner: serving on %s:%d\n", host.c_str(), bound);
  std::fflush(stdout);
  server->Wait();
  return 0;
}
