// An example planner under test in C++: follows its route at the speed limit and brakes for the
// nearest road user ahead in its corridor (IDM). It serves drivetwin's planner protocol v1
// (proto/drivetwin/planner/v1/planner.proto) and answers continuous or trajectory actions, on
// the Session stream (the twin's lock-step path) and on the unary rpcs alike.
//
//   ./cpp_planner --port 50051 [--unary-only]
//
// --unary-only answers Session UNIMPLEMENTED, as a planner written against the unary rpcs only:
// the twin then sends one unary call per step.
//
// In a suite: [policy] command = "build/cpp_planner/cpp_planner --port {port}".

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "drivetwin/planner/v1/planner.grpc.pb.h"

namespace pl = drivetwin::planner::v1;

namespace {

constexpr uint32_t kProtocolVersion = 1;
constexpr double kDefaultSpeed = 13.9;  // [m/s] when the route has no speed limit
constexpr double kAMax = 2.0, kBComf = 3.0, kS0 = 2.0, kHeadway = 1.5;  // IDM
constexpr double kCorridorMargin = 0.4;  // [m]

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

class RouteFollower final : public pl::Planner::Service {
 public:
  explicit RouteFollower(bool unary_only) : unary_only_(unary_only) {}

  grpc::Status Describe(grpc::ServerContext*, const pl::DescribeRequest*, pl::PlannerInfo* info) override {
    info->set_status(pl::STATUS_OK);
    info->set_name("cpp_route_follower");
    info->set_protocol_version(kProtocolVersion);
    info->add_action_types(pl::ACTION_TYPE_CONTINUOUS);
    info->add_action_types(pl::ACTION_TYPE_TRAJECTORY);
    return grpc::Status::OK;
  }

  grpc::Status Reset(grpc::ServerContext*, const pl::ScenarioInit* init, pl::ResetReply* reply) override {
    reply->set_t_us(init->t_us());
    reply->set_planner_name("cpp_route_follower");
    reply->set_protocol_version(kProtocolVersion);
    const auto type = init->action().type();
    if (init->protocol_version() != kProtocolVersion) {
      reply->set_status(pl::STATUS_ERROR);
      reply->set_message("protocol version " + std::to_string(init->protocol_version()) + " is not served");
      return grpc::Status::OK;
    }
    if (type != pl::ACTION_TYPE_CONTINUOUS && type != pl::ACTION_TYPE_TRAJECTORY) {
      reply->set_status(pl::STATUS_ERROR);
      reply->set_message("cpp_route_follower answers continuous or trajectory actions only");
      return grpc::Status::OK;
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
      return grpc::Status::OK;
    }
    std::lock_guard<std::mutex> lock(mu_);
    episodes_[init->session()] = std::move(e);
    reply->set_status(pl::STATUS_OK);
    return grpc::Status::OK;
  }

  grpc::Status Step(grpc::ServerContext*, const pl::Observation* obs, pl::Command* cmd) override {
    cmd->set_t_us(obs->t_us());
    Episode e;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = episodes_.find(obs->session());
      if (it == episodes_.end()) {
        cmd->set_status(pl::STATUS_ERROR);
        cmd->set_message("no episode in this session: Reset first");
        return grpc::Status::OK;
      }
      e = it->second;
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
    return grpc::Status::OK;
  }

  grpc::Status Close(grpc::ServerContext*, const pl::CloseRequest* req, pl::CloseReply* reply) override {
    std::lock_guard<std::mutex> lock(mu_);
    episodes_.erase(req->session());
    reply->set_status(pl::STATUS_OK);
    reply->set_t_us(req->t_us());
    return grpc::Status::OK;
  }

  // Every message of the call answered in order by the unary handler of its kind.
  grpc::Status Session(grpc::ServerContext* context,
                       grpc::ServerReaderWriter<pl::SessionReply, pl::SessionRequest>* stream) override {
    if (unary_only_) return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "cpp_planner --unary-only");
    std::printf("cpp_planner: Session call opened\n");
    std::fflush(stdout);
    pl::SessionRequest request;
    while (stream->Read(&request)) {
      pl::SessionReply reply;
      switch (request.request_case()) {
        case pl::SessionRequest::kReset: Reset(context, &request.reset(), reply.mutable_reset()); break;
        case pl::SessionRequest::kStep: Step(context, &request.step(), reply.mutable_step()); break;
        case pl::SessionRequest::kClose: Close(context, &request.close(), reply.mutable_close()); break;
        default:
          return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "a SessionRequest carries none of reset, step, close");
      }
      if (!stream->Write(reply)) break;
    }
    return grpc::Status::OK;
  }

 private:
  const bool unary_only_;
  std::mutex mu_;
  std::map<std::string, Episode> episodes_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1", port = "50051";
  bool unary_only = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--unary-only") == 0) unary_only = true;
    else if (i + 1 < argc && std::strcmp(argv[i], "--port") == 0) port = argv[++i];
    else if (i + 1 < argc && std::strcmp(argv[i], "--host") == 0) host = argv[++i];
  }
  RouteFollower service(unary_only);
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
