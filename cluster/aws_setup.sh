#!/usr/bin/env bash
# One-time AWS setup for cluster/cluster.yaml: roles, instance profiles, bucket, security group.
#
#   cluster/aws_setup.sh --bucket my-bucket --prefix freezeframe --region us-west-2 \
#       --ssh-cidr 203.0.113.7/32 [--ecr-repo freezeframe]
#
# Creates, or brings up to date when they exist (running it twice is safe):
#   - roles + instance profiles freezeframe-head and freezeframe-worker (the names cluster.yaml
#     uses), with the policies in cluster/iam/ filled in for this account, region and bucket:
#     the worker may read/write/delete only s3://BUCKET/PREFIX/...; the head may in addition
#     launch, tag and terminate this cluster's workers of one instance type, pass the worker
#     role (no other) and read the DLAMI's SSM parameter. With --ecr-repo both may pull that
#     one ECR repository (for the prebuilt image of cluster/Dockerfile).
#   - the bucket, if missing, with all public access blocked;
#   - security group freezeframe-ray-nodes in the region's default VPC: SSH from --ssh-cidr only
#     (a rule open to 0.0.0.0/0 or ::/0 on port 22 is removed), all traffic among its members.
# Then it looks up the AMI that cluster.yaml's `resolve:ssm:` names and checks its root device.
#
# Needs the AWS CLI and credentials allowed to manage IAM, S3 buckets and EC2 security groups
# (an administrator, once). Nothing here is secret; it prints every name it uses.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CLUSTER_YAML="$HERE/cluster.yaml"
IAM_DIR="$HERE/iam"

# The names cluster/cluster.yaml refers to (tests/test_cluster_config.py checks they agree).
CLUSTER_NAME=freezeframe
HEAD_NAME=freezeframe-head
WORKER_NAME=freezeframe-worker
SECURITY_GROUP=freezeframe-ray-nodes
WORKER_INSTANCE_TYPE=g4dn.xlarge
ROOT_DEVICE=/dev/sda1
ROOT_VOLUME_GIB=150
AMI_PARAMETER=/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id

usage() {
  sed -n '2,5p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  echo "Options: --bucket NAME --prefix PATH --region REGION --ssh-cidr A.B.C.D/N [--ecr-repo NAME]"
}

fail() {
  echo "aws_setup.sh: $*" >&2
  exit 2
}

BUCKET="" PREFIX="" REGION="" SSH_CIDR="" ECR_REPO=""
while (($#)); do
  case "$1" in
    --bucket) BUCKET="${2:-}" ;;
    --prefix) PREFIX="${2:-}" ;;
    --region) REGION="${2:-}" ;;
    --ssh-cidr) SSH_CIDR="${2:-}" ;;
    --ecr-repo) ECR_REPO="${2:-}" ;;
    -h | --help) usage && exit 0 ;;
    *) usage >&2 && fail "unknown option: $1" ;;
  esac
  shift 2 || fail "$1 needs a value"
done

# --- check every input before the first AWS call ---------------------------------------------
[[ -n $BUCKET && -n $PREFIX && -n $REGION && -n $SSH_CIDR ]] ||
  { usage >&2 && fail "--bucket, --prefix, --region and --ssh-cidr are required"; }
[[ $BUCKET =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || fail "--bucket '$BUCKET' is not an S3 bucket name"
PREFIX="${PREFIX#/}" PREFIX="${PREFIX%/}"
[[ $PREFIX =~ ^[A-Za-z0-9._/-]+$ ]] ||
  fail "--prefix '$PREFIX': letters, digits, '.', '_', '-' and '/' only (it becomes part of an IAM ARN)"
[[ $REGION =~ ^[a-z]{2}(-[a-z]+)+-[0-9]$ ]] || fail "--region '$REGION' is not an AWS region name"
[[ -z $ECR_REPO || $ECR_REPO =~ ^[a-z0-9][a-z0-9._/-]*$ ]] || fail "--ecr-repo '$ECR_REPO' is not an ECR repository name"
if [[ $SSH_CIDR == "0.0.0.0/0" || $SSH_CIDR == "::/0" ]]; then
  fail "--ssh-cidr $SSH_CIDR opens SSH to the whole internet; give your own address, e.g. \$(curl -s https://checkip.amazonaws.com)/32"
fi
[[ $SSH_CIDR =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})/([0-9]{1,2})$ ]] ||
  fail "--ssh-cidr '$SSH_CIDR' is not an IPv4 CIDR such as 203.0.113.7/32"
for octet in "${BASH_REMATCH[@]:1:4}"; do
  ((10#$octet <= 255)) || fail "--ssh-cidr '$SSH_CIDR': $octet is not an IPv4 octet"
done
((10#${BASH_REMATCH[5]} >= 8 && 10#${BASH_REMATCH[5]} <= 32)) ||
  fail "--ssh-cidr '$SSH_CIDR': the prefix length must be 8..32 (32 = one address)"
yaml_region="$(sed -n 's/^  region: *\([a-z0-9-]*\).*/\1/p' "$CLUSTER_YAML")"
[[ $yaml_region == "$REGION" ]] ||
  fail "cluster.yaml launches in '$yaml_region', not '$REGION': pass --region $yaml_region or edit provider.region there"

export AWS_DEFAULT_REGION="$REGION" AWS_PAGER=""
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

ACCOUNT_ID="$(aws sts get-caller-identity --query Account --output text)"
[[ $ACCOUNT_ID =~ ^[0-9]{12}$ ]] || fail "could not read the AWS account id (aws sts get-caller-identity): '$ACCOUNT_ID'"
echo "AWS account $ACCOUNT_ID, region $REGION, bucket s3://$BUCKET/$PREFIX, SSH from $SSH_CIDR"

# --- policies: the templates in cluster/iam/ with this setup's values ---------------------------
render() { # render TEMPLATE -> path of the filled-in copy, checked to be JSON without placeholders
  local out
  out="$WORK/$(basename "$1")"
  sed -e "s|__ACCOUNT_ID__|$ACCOUNT_ID|g" -e "s|__REGION__|$REGION|g" \
    -e "s|__BUCKET__|$BUCKET|g" -e "s|__PREFIX__|$PREFIX|g" \
    -e "s|__CLUSTER_NAME__|$CLUSTER_NAME|g" -e "s|__WORKER_ROLE__|$WORKER_NAME|g" \
    -e "s|__WORKER_INSTANCE_TYPE__|$WORKER_INSTANCE_TYPE|g" -e "s|__ECR_REPO__|$ECR_REPO|g" \
    "$1" >"$out"
  python3 -m json.tool "$out" >/dev/null || fail "$1 did not render to valid JSON"
  ! grep -q '__[A-Z_]*__' "$out" || fail "$1 has a placeholder left: $(grep -o '__[A-Z_]*__' "$out" | head -1)"
  echo "$out"
}
TRUST="$(render "$IAM_DIR/ec2-trust-policy.json")"
BUCKET_POLICY="$(render "$IAM_DIR/bucket-prefix-policy.json")"
HEAD_POLICY="$(render "$IAM_DIR/head-autoscaler-policy.json")"
[[ -z $ECR_REPO ]] || ECR_POLICY="$(render "$IAM_DIR/ecr-pull-policy.json")"

# --- roles and instance profiles -----------------------------------------------------------------
ensure_role() { # ensure_role NAME POLICY_NAME=FILE...
  local name="$1" entry
  shift
  if aws iam get-role --role-name "$name" >/dev/null 2>&1; then
    aws iam update-assume-role-policy --role-name "$name" --policy-document "file://$TRUST"
  else
    aws iam create-role --role-name "$name" --assume-role-policy-document "file://$TRUST" \
      --description "FreezeFrame Ray cluster ($name), made by cluster/aws_setup.sh" >/dev/null
    echo "created role $name"
  fi
  for entry in "$@"; do # inline policies: put-role-policy replaces the previous version
    aws iam put-role-policy --role-name "$name" --policy-name "${entry%%=*}" \
      --policy-document "file://${entry#*=}"
  done
  if ! aws iam get-instance-profile --instance-profile-name "$name" >/dev/null 2>&1; then
    aws iam create-instance-profile --instance-profile-name "$name" >/dev/null
    echo "created instance profile $name"
  fi
  local roles
  roles="$(aws iam get-instance-profile --instance-profile-name "$name" \
    --query 'InstanceProfile.Roles[].RoleName' --output text)"
  if [[ " $roles " != *" $name "* ]]; then
    aws iam add-role-to-instance-profile --instance-profile-name "$name" --role-name "$name"
  fi
}
worker_policies=("freezeframe-bucket-prefix=$BUCKET_POLICY")
head_policies=("freezeframe-bucket-prefix=$BUCKET_POLICY" "freezeframe-autoscaler=$HEAD_POLICY")
if [[ -n $ECR_REPO ]]; then
  worker_policies+=("freezeframe-ecr-pull=$ECR_POLICY")
  head_policies+=("freezeframe-ecr-pull=$ECR_POLICY")
fi
ensure_role "$WORKER_NAME" "${worker_policies[@]}"
ensure_role "$HEAD_NAME" "${head_policies[@]}"

# --- bucket ----------------------------------------------------------------------------------
if ! aws s3api head-bucket --bucket "$BUCKET" >/dev/null 2>&1; then
  if [[ $REGION == us-east-1 ]]; then
    aws s3api create-bucket --bucket "$BUCKET" >/dev/null ||
      fail "could not create s3://$BUCKET (taken by another account? pick another name)"
  else
    aws s3api create-bucket --bucket "$BUCKET" \
      --create-bucket-configuration "LocationConstraint=$REGION" >/dev/null ||
      fail "could not create s3://$BUCKET (taken by another account? pick another name)"
  fi
  echo "created bucket s3://$BUCKET in $REGION"
fi
aws s3api put-public-access-block --bucket "$BUCKET" --public-access-block-configuration \
  BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true

# --- security group: SSH from one CIDR, Ray's ports among the group's members only -------------
VPC_ID="$(aws ec2 describe-vpcs --filters Name=isDefault,Values=true --query 'Vpcs[0].VpcId' --output text)"
[[ $VPC_ID == vpc-* ]] ||
  fail "region $REGION has no default VPC, where Ray launches by default; create one with 'aws ec2 create-default-vpc'"
find_group() {
  aws ec2 describe-security-groups --filters "Name=group-name,Values=$SECURITY_GROUP" \
    "Name=vpc-id,Values=$VPC_ID" --query 'SecurityGroups[0].GroupId' --output text
}
SG_ID="$(find_group)"
if [[ $SG_ID != sg-* ]]; then
  SG_ID="$(aws ec2 create-security-group --group-name "$SECURITY_GROUP" --vpc-id "$VPC_ID" \
    --description "FreezeFrame Ray nodes: SSH from one CIDR, all traffic among members" \
    --query GroupId --output text)"
  echo "created security group $SECURITY_GROUP ($SG_ID) in $VPC_ID"
fi
has_rule() { # has_rule JMESPATH-FILTER -> non-empty when a matching ingress rule exists
  [[ -n "$(aws ec2 describe-security-groups --group-ids "$SG_ID" \
    --query "SecurityGroups[0].IpPermissions[$1]" --output text)" ]]
}
if has_rule "?FromPort==\`22\` && IpRanges[?CidrIp=='0.0.0.0/0']"; then
  aws ec2 revoke-security-group-ingress --group-id "$SG_ID" \
    --ip-permissions 'IpProtocol=tcp,FromPort=22,ToPort=22,IpRanges=[{CidrIp=0.0.0.0/0}]' >/dev/null
  echo "removed SSH from 0.0.0.0/0 on $SECURITY_GROUP"
fi
if has_rule "?FromPort==\`22\` && Ipv6Ranges[?CidrIpv6=='::/0']"; then
  aws ec2 revoke-security-group-ingress --group-id "$SG_ID" \
    --ip-permissions 'IpProtocol=tcp,FromPort=22,ToPort=22,Ipv6Ranges=[{CidrIpv6=::/0}]' >/dev/null
  echo "removed SSH from ::/0 on $SECURITY_GROUP"
fi
if ! has_rule "?FromPort==\`22\` && IpRanges[?CidrIp=='$SSH_CIDR']"; then
  aws ec2 authorize-security-group-ingress --group-id "$SG_ID" \
    --ip-permissions "IpProtocol=tcp,FromPort=22,ToPort=22,IpRanges=[{CidrIp=$SSH_CIDR,Description=ssh-for-ray-up}]" >/dev/null
fi
if ! has_rule "?IpProtocol=='-1' && UserIdGroupPairs[?GroupId=='$SG_ID']"; then
  aws ec2 authorize-security-group-ingress --group-id "$SG_ID" \
    --ip-permissions "IpProtocol=-1,UserIdGroupPairs=[{GroupId=$SG_ID,Description=ray-between-nodes}]" >/dev/null
fi

# --- the AMI cluster.yaml launches -------------------------------------------------------------
AMI_ID="$(aws ssm get-parameter --name "$AMI_PARAMETER" --query Parameter.Value --output text)" ||
  fail "could not read the SSM parameter $AMI_PARAMETER in $REGION"
[[ $AMI_ID == ami-* ]] || fail "$AMI_PARAMETER in $REGION gave '$AMI_ID', not an AMI id"
read -r AMI_ROOT AMI_NAME < <(aws ec2 describe-images --image-ids "$AMI_ID" \
  --query 'Images[0].[RootDeviceName,Name]' --output text | tr '\t' ' ')
AMI_ROOT_GIB="$(aws ec2 describe-images --image-ids "$AMI_ID" \
  --query "Images[0].BlockDeviceMappings[?DeviceName=='$ROOT_DEVICE'].Ebs.VolumeSize | [0]" --output text)"
[[ $AMI_ROOT == "$ROOT_DEVICE" ]] ||
  fail "$AMI_ID boots from $AMI_ROOT, but cluster.yaml sizes $ROOT_DEVICE: change DeviceName there"
[[ $AMI_ROOT_GIB =~ ^[0-9]+$ ]] || fail "could not read the root volume size of $AMI_ID: '$AMI_ROOT_GIB'"
((AMI_ROOT_GIB <= ROOT_VOLUME_GIB)) ||
  fail "$AMI_ID needs a ${AMI_ROOT_GIB} GiB root volume; raise VolumeSize ($ROOT_VOLUME_GIB) in cluster.yaml"

# --- what to do next -------------------------------------------------------------------------
QUOTA="$(aws service-quotas get-service-quota --service-code ec2 --quota-code L-DB2E81BA \
  --query Quota.Value --output text 2>/dev/null || echo unknown)"
cat <<EOF

Ready.
  instance profiles  $HEAD_NAME (head), $WORKER_NAME (workers)
  security group     $SECURITY_GROUP ($SG_ID): SSH from $SSH_CIDR, Ray among members
  bucket prefix      s3://$BUCKET/$PREFIX  (the only S3 place the nodes may touch)
  AMI today          $AMI_ID ($AMI_NAME); to pin it for a whole study, replace the two
                     'resolve:ssm:...' ImageId values in cluster/cluster.yaml with it
  G and VT vCPU quota (Running On-Demand G and VT instances): $QUOTA; 8 g4dn.xlarge need 32

Next:
  ray up cluster/cluster.yaml
  ray submit cluster/cluster.yaml search/run.py -- --config configs/paper.yaml \\
      --data /home/ray/data/hc18 --name paper --storage s3://$BUCKET/$PREFIX
EOF
