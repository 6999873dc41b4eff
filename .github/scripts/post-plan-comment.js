// Posts terraform/envs/<env>/PLAN.md on the pull request as one comment per environment,
// found again by its marker and updated in place on every push.
const fs = require('fs');

module.exports = async ({github, context, env}) => {
  const marker = `<!-- breedops-plan:${env} -->`;
  const path = `terraform/envs/${env}/PLAN.md`;
  const plan = fs.existsSync(path)
    ? fs.readFileSync(path, 'utf8')
    : `# Terraform plan: \`${env}\`\n\nNo PLAN.md: the plan failed; see the job log.\n`;
  // GitHub limits a comment to 65536 characters.
  const body = `${marker}\n${plan}`.slice(0, 65000);
  const {owner, repo} = context.repo;
  const issue_number = context.issue.number;
  const comments = await github.paginate(github.rest.issues.listComments,
    {owner, repo, issue_number, per_page: 100});
  const mine = comments.find((c) => c.user.type === 'Bot' && c.body.startsWith(marker));
  if (mine) {
    await github.rest.issues.updateComment({owner, repo, comment_id: mine.id, body});
  } else {
    await github.rest.issues.createComment({owner, repo, issue_number, body});
  }
};
